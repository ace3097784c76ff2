//! Bearer-token authentication of gRPC calls.

use crate::domain::Token;
use crate::publishing::PublishError;
use tonic::codegen::http::HeaderMap;

/// The token of `authorization: Bearer <token>` metadata (an HTTP/2 header).
pub fn bearer_token(headers: &HeaderMap) -> Result<Token, PublishError> {
    let mut values = headers.get_all("authorization").iter();
    let value = values.next().ok_or(PublishError::Unauthenticated(
        "missing `authorization: Bearer <token>` metadata",
    ))?;
    // Two credentials: which one the call is made with would be a guess.
    if values.next().is_some() {
        return Err(PublishError::Unauthenticated(
            "more than one `authorization` metadata: send one token",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| PublishError::Unauthenticated("authorization metadata is not text"))?;
    let (scheme, token) = value.split_once(' ').ok_or(PublishError::Unauthenticated(
        "authorization must be `Bearer <token>`",
    ))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(PublishError::Unauthenticated(
            "authorization must be `Bearer <token>`",
        ));
    }
    Ok(Token::from_presented(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert("authorization", value.parse().unwrap());
        map
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(
            bearer_token(&with("bearer fp_abc")).unwrap().expose(),
            "fp_abc"
        );
        assert_eq!(
            bearer_token(&with("Bearer  fp_abc ")).unwrap().expose(),
            "fp_abc"
        );
    }

    #[test]
    fn other_schemes_and_missing_tokens_are_unauthenticated() {
        for bad in ["Basic abc", "Bearer", "Bearer ", "fp_abc"] {
            assert!(
                matches!(
                    bearer_token(&with(bad)),
                    Err(PublishError::Unauthenticated(_))
                ),
                "{bad}"
            );
        }
        assert!(bearer_token(&HeaderMap::new()).is_err());
        let mut two = with("Bearer fp_abc");
        two.append("authorization", "Bearer fp_def".parse().unwrap());
        assert!(
            matches!(bearer_token(&two), Err(PublishError::Unauthenticated(m)) if m.contains("more than one")),
            "two tokens"
        );
    }
}
