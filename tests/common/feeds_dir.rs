//! What `feeds/` must hold whatever happened to the process writing it (a kill, a full
//! disk): whole documents only, each parsing, its `.gz` and `.br` siblings decoding to the
//! same bytes, no temporary file, and, once the server has written what it serves, every
//! document the same as the server serves.

use super::binary::Running;
use std::io::Read;
use std::path::Path;

/// Every file under `dir`, as paths relative to it with `/` separators, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap();
                found.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    found.sort();
    found
}

/// Why a document does not parse, if it does not: RSS and Atom by feed-rs and by roxmltree
/// (strict XML 1.0), JSON Feed by serde_json and feed-rs, the stylesheet by roxmltree.
pub fn parse_problem(name: &str, bytes: &[u8]) -> Option<String> {
    let xml = |bytes: &[u8]| -> Option<String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string()).ok()?;
        roxmltree::Document::parse(text)
            .err()
            .map(|e| format!("XML: {e}"))
    };
    let feed = |bytes: &[u8]| {
        feed_rs::parser::parse(bytes)
            .err()
            .map(|e| format!("feed-rs: {e}"))
    };
    let file = name.rsplit('/').next().unwrap_or(name);
    match file {
        "rss.xml" | "atom.xml" => {
            if std::str::from_utf8(bytes).is_err() {
                return Some("not UTF-8".into());
            }
            xml(bytes).or_else(|| feed(bytes))
        }
        "feed.json" => serde_json::from_slice::<serde_json::Value>(bytes)
            .err()
            .map(|e| format!("JSON: {e}"))
            .or_else(|| feed(bytes)),
        "feed.xsl" => xml(bytes),
        _ => Some("not a file feedpub writes".into()),
    }
}

/// The document a `.gz` or `.br` file holds, decoded; `None` for other files.
pub fn decoded(name: &str, bytes: &[u8]) -> Option<Result<(String, Vec<u8>), String>> {
    let mut out = Vec::new();
    let (base, read) = if let Some(base) = name.strip_suffix(".gz") {
        (
            base,
            flate2::read::GzDecoder::new(bytes).read_to_end(&mut out),
        )
    } else {
        let base = name.strip_suffix(".br")?;
        (
            base,
            brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out),
        )
    };
    Some(
        read.map(|_| (base.to_owned(), out))
            .map_err(|e| format!("cannot decode: {e}")),
    )
}

/// Checks every file under `dir` (see the module) and that each document is what `server`
/// serves at `/feeds/<path>`. Returns how many files were checked, or every problem found.
pub async fn check(dir: &Path, server: &Running) -> Result<usize, Vec<String>> {
    check_against(dir, Some(server)).await
}

/// Checks every file under `dir` (see the module) but what the server serves: while its
/// files cannot be written, a server serves newer documents than they hold.
pub async fn check_whole(dir: &Path) -> Result<usize, Vec<String>> {
    check_against(dir, None).await
}

/// Checks every file under `dir`, and that each document is what `server` serves, if given.
async fn check_against(dir: &Path, server: Option<&Running>) -> Result<usize, Vec<String>> {
    let http = reqwest::Client::new();
    let mut problems = Vec::new();
    let files = files_under(dir);
    for name in &files {
        let file_name = name.rsplit('/').next().unwrap_or(name);
        if file_name.starts_with('.') {
            problems.push(format!("{name}: a temporary file was left"));
            continue;
        }
        let bytes = match std::fs::read(dir.join(name)) {
            Ok(bytes) => bytes,
            Err(e) => {
                problems.push(format!("{name}: unreadable: {e}"));
                continue;
            }
        };
        if bytes.is_empty() {
            problems.push(format!("{name}: empty"));
            continue;
        }
        match decoded(name, &bytes) {
            Some(Ok((base, document))) => {
                if std::fs::read(dir.join(&base)).ok() != Some(document) {
                    problems.push(format!("{name}: does not decode to {base}"));
                }
            }
            Some(Err(e)) => problems.push(format!("{name}: {e}")),
            None => {
                if let Some(problem) = parse_problem(name, &bytes) {
                    problems.push(format!("{name}: {problem}"));
                }
                let Some(server) = server else { continue };
                let response = http
                    .get(server.url(&format!("/feeds/{name}")))
                    .header("accept-encoding", "identity")
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status() == 200 => {
                        let served = response.bytes().await.map(|b| b.to_vec());
                        if served.as_deref().ok() != Some(&bytes[..]) {
                            problems.push(format!("{name}: differs from what is served"));
                        }
                    }
                    Ok(response) => {
                        problems.push(format!("{name}: served with {}", response.status()))
                    }
                    Err(e) => problems.push(format!("{name}: cannot be fetched: {e}")),
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(files.len())
    } else {
        Err(problems)
    }
}
