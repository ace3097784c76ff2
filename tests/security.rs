//! Security as tests (issue 8, item 6): every RPC the server lists through reflection is
//! called without a token and with another partner's token, built generically from its
//! descriptor (a raw-bytes codec and a minimal message), so an RPC added later is covered
//! without touching this file; only health and reflection are public. Tokens never reach
//! the log (the binary logging at trace level, so every level) nor the database (every table read back,
//! and the raw files searched).

mod common;

use common::binary::{Running, ServeOptions, ServeProcess};
use common::{Tokens, authed, ts};
use feedpub::grpc::proto::{self, PublishArticleRequest};
use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorProto};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// Services anyone may call without a token.
const PUBLIC_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// RPCs that answer any partner with what is that partner's own (or nobody's): with another
/// partner's token they succeed, but must show nothing of the victim's. Any RPC not listed
/// here must refuse another partner's token outright.
const SELF_SCOPED: [&str; 4] = [
    "feedpub.v1.PublisherService/ListArticles",
    "feedpub.v1.PublisherService/ListSections",
    // An empty batch publishes nothing; a batch only ever writes the caller's own articles.
    "feedpub.v1.PublisherService/PublishArticles",
    // Follows the sections the caller may read (what their public feeds show), from now on
    // when no cursor is given: nothing of the victim's past.
    "feedpub.v1.PublisherService/WatchArticles",
];

// ---------------------------------------------------------------------------------------
// A codec that sends and receives messages as raw bytes.

#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Calls `/{service}/{method}` with one message, whatever its kind (unary or streaming),
/// and returns the first answer or the status.
async fn call(
    channel: &Channel,
    path: &str,
    token: Option<&str>,
    message: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let stream = tokio_stream::iter([message]);
    let request = match token {
        Some(token) => authed(token, stream),
        None => tonic::Request::new(stream),
    };
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path).unwrap();
    let mut answers = grpc.streaming(request, path, RawCodec).await?.into_inner();
    Ok(answers.message().await?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------
// Reflection: every service, method and message type the server describes.

struct Described {
    /// `package.Service` to its methods: (name, input type).
    services: BTreeMap<String, Vec<(String, String)>>,
    /// `.package.Message` to its descriptor.
    messages: BTreeMap<String, DescriptorProto>,
}

async fn describe(channel: &Channel) -> Described {
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let ask = |request: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let answer = |response: tonic::Response<tonic::Streaming<_>>| async move {
        let mut stream = response.into_inner();
        let first: tonic_reflection::pb::v1::ServerReflectionResponse = stream
            .message()
            .await
            .unwrap()
            .expect("a reflection answer");
        first.message_response.expect("a reflection message")
    };
    let listed = reflection
        .server_reflection_info(tokio_stream::iter([ask(MessageRequest::ListServices(
            String::new(),
        ))]))
        .await
        .expect("reflection answers without a token");
    let MessageResponse::ListServicesResponse(listed) = answer(listed).await else {
        panic!("not a service list");
    };
    let mut services = BTreeMap::new();
    let mut messages = BTreeMap::new();
    for service in listed.service {
        let files = reflection
            .server_reflection_info(tokio_stream::iter([ask(
                MessageRequest::FileContainingSymbol(service.name.clone()),
            )]))
            .await
            .unwrap();
        let MessageResponse::FileDescriptorResponse(files) = answer(files).await else {
            panic!("no descriptor for {}", service.name);
        };
        for bytes in files.file_descriptor_proto {
            let file = FileDescriptorProto::decode(&bytes[..]).unwrap();
            collect(&file, &mut services, &mut messages);
        }
        services.entry(service.name).or_default();
    }
    Described { services, messages }
}

fn collect(
    file: &FileDescriptorProto,
    services: &mut BTreeMap<String, Vec<(String, String)>>,
    messages: &mut BTreeMap<String, DescriptorProto>,
) {
    let package = file.package();
    fn nested(
        prefix: &str,
        message: &DescriptorProto,
        into: &mut BTreeMap<String, DescriptorProto>,
    ) {
        let name = format!("{prefix}.{}", message.name());
        for inner in &message.nested_type {
            nested(&name, inner, into);
        }
        into.insert(name, message.clone());
    }
    for message in &file.message_type {
        nested(&format!(".{package}"), message, messages);
    }
    for service in &file.service {
        let methods = service
            .method
            .iter()
            .map(|m| (m.name().to_owned(), m.input_type().to_owned()))
            .collect();
        services.insert(format!("{package}.{}", service.name()), methods);
    }
}

/// A minimal message of `type_name` aimed at the victim: every string field whose name is
/// in `values` gets that value, a `publish_time` timestamp is set, singular message fields
/// are filled the same way; everything else stays empty.
fn minimal_message(
    described: &Described,
    type_name: &str,
    values: &BTreeMap<&str, String>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(message) = described.messages.get(type_name) else {
        return out;
    };
    for field in &message.field {
        let number = field.number() as u32;
        let repeated = field.label() == Label::Repeated;
        match field.r#type() {
            Type::String => {
                if let Some(value) = values.get(field.name()) {
                    prost::encoding::string::encode(number, value, &mut out);
                }
            }
            Type::Message if field.type_name() == ".google.protobuf.Timestamp" => {
                // Only the publish time is required; other times stay unset.
                let time = (field.name() == "publish_time").then(|| ts(1_686_096_000));
                if let Some(time) = time {
                    prost::encoding::message::encode(number, &time, &mut out);
                }
            }
            Type::Message if !repeated => {
                let inner = minimal_message(described, field.type_name(), values);
                prost::encoding::encode_key(
                    number,
                    prost::encoding::WireType::LengthDelimited,
                    &mut out,
                );
                prost::encoding::encode_varint(inner.len() as u64, &mut out);
                out.extend_from_slice(&inner);
            }
            _ => {}
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn start(dir: &Path, log_filter: &str) -> (ServeProcess, Running, Tokens) {
    let data_dir = dir.join("data");
    let tokens = common::add_partners(&data_dir).await;
    let mut server = ServeProcess::start(ServeOptions {
        log_filter: Some(log_filter),
        ..ServeOptions::new(&data_dir, &dir.join("feeds"))
    });
    let running = server.wait_ready();
    (server, running, tokens)
}

/// Publishes the victim's article: `newsroom`'s, in politics, which `county` may not use.
async fn publish_victim(running: &Running, tokens: &Tokens) -> proto::Article {
    let article = proto::Article {
        id: "victim-1".into(),
        section: "politics".into(),
        title: "只属于编辑部的稿件".into(),
        content_text: "正文。".into(),
        publish_time: Some(ts(1_686_096_000)),
        ..Default::default()
    };
    running
        .client()
        .await
        .publish_article(authed(
            &tokens.newsroom,
            PublishArticleRequest {
                article: Some(article),
                ..Default::default()
            },
        ))
        .await
        .expect("the victim publishes")
        .into_inner()
        .article
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_a_missing_token_and_another_partners_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, running, tokens) = start(dir.path(), "info").await;
    let victim = publish_victim(&running, &tokens).await;
    let channel = running.channel().await;
    let described = describe(&channel).await;

    let listed: BTreeSet<&str> = described.services.keys().map(String::as_str).collect();
    let private: Vec<&str> = listed
        .iter()
        .copied()
        .filter(|s| !PUBLIC_SERVICES.contains(s))
        .collect();
    assert_eq!(private, ["feedpub.v1.PublisherService"], "{listed:?}");
    for public in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(listed.contains(public), "{public} is served: {listed:?}");
    }
    // Health answers without a token (reflection just did).
    call(&channel, "/grpc.health.v1.Health/Check", None, Vec::new())
        .await
        .expect("health is public");

    let values: BTreeMap<&str, String> = [
        ("id", victim.id.clone()),
        ("section", victim.section.clone()),
        ("title", "越权写入".to_owned()),
        ("content_text", "越权正文。".to_owned()),
        ("reason", "越权撤稿".to_owned()),
    ]
    .into();
    let mut calls = 0;
    for service in private {
        let methods = &described.services[service];
        assert!(!methods.is_empty(), "{service} has methods");
        for (method, input) in methods {
            let path = format!("/{service}/{method}");
            let name = &path[1..];
            let message = minimal_message(&described, input, &values);
            let wrong = format!("fp_{}", "A".repeat(43));
            for (token, what) in [
                (None, "no token"),
                (Some(wrong.as_str()), "an unknown token"),
                (Some("Basic bmV3c3Jvb20="), "another scheme"),
            ] {
                let status = call(&channel, &path, token, message.clone())
                    .await
                    .expect_err(&format!("{name} with {what}"));
                assert_eq!(
                    status.code(),
                    Code::Unauthenticated,
                    "{name}, {what}: {status:?}"
                );
                calls += 1;
            }
            // With another partner's token the victim's article is neither shown nor changed.
            let answer = call(&channel, &path, Some(&tokens.county), message.clone()).await;
            match answer {
                Err(status) => assert!(
                    matches!(status.code(), Code::PermissionDenied | Code::NotFound),
                    "{name} with another partner's token: {status:?}"
                ),
                Ok(bytes) => {
                    assert!(
                        SELF_SCOPED.contains(&name),
                        "{name} answered another partner's token: add it to SELF_SCOPED if \
                         that is right, or make it refuse"
                    );
                    for secret in [&victim.guid, &victim.title, &victim.etag] {
                        assert!(
                            !contains(&bytes, secret.as_bytes()),
                            "{name} shows {secret}"
                        );
                    }
                }
            }
            calls += 1;
        }
    }
    let after = running
        .client()
        .await
        .get_article(authed(
            &tokens.newsroom,
            proto::GetArticleRequest {
                id: victim.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        after, victim,
        "nothing another partner sent changed the article"
    );
    println!(
        "security: {calls} refused or harmless calls over {} services",
        described.services.len()
    );
}

/// Every value of every row of every table, as bytes, read with the database read-only.
async fn database_dump(data_dir: &Path) -> Vec<(String, Vec<u8>)> {
    use sqlx::{Column, Row};
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("feedpub.sqlite3"))
        .read_only(true);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
        .await
        .unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert!(tables.iter().any(|t| t == "partners"), "{tables:?}");
    let mut values = Vec::new();
    for table in tables {
        let rows = sqlx::query(&format!("SELECT * FROM \"{table}\""))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        for row in rows {
            for column in row.columns() {
                let value: Option<Vec<u8>> = row.try_get_unchecked(column.ordinal()).unwrap();
                values.push((
                    format!("{table}.{}", column.name()),
                    value.unwrap_or_default(),
                ));
            }
        }
    }
    let _ = sqlx::Connection::close(conn).await;
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_the_log_or_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, running, tokens) = start(dir.path(), "trace").await;
    // A third partner made by the CLI, which prints its token on stdout and nowhere else.
    let added = std::process::Command::new(env!("CARGO_BIN_EXE_feedpub"))
        .args([
            "partner",
            "add",
            "wire",
            "--section",
            "politics",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let wire = String::from_utf8(added.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let cli_log = String::from_utf8_lossy(&added.stderr).into_owned();

    // Every kind of call, good and bad, with every token.
    publish_victim(&running, &tokens).await;
    let unknown = format!("fp_{}", "Z".repeat(43));
    let mut client = running.client().await;
    for token in [&tokens.newsroom, &tokens.county, &wire, &unknown] {
        let _ = client
            .list_sections(authed(token, proto::ListSectionsRequest {}))
            .await;
        let _ = client
            .get_article(authed(
                token,
                proto::GetArticleRequest {
                    id: "victim-1".into(),
                    ..Default::default()
                },
            ))
            .await;
        let article = proto::Article {
            id: "probe".into(),
            section: "politics".into(),
            title: "探针".into(),
            content_text: "正文。".into(),
            publish_time: Some(ts(1_686_096_000)),
            ..Default::default()
        };
        let _ = client
            .publish_article(authed(
                token,
                PublishArticleRequest {
                    article: Some(article),
                    ..Default::default()
                },
            ))
            .await;
    }
    server.kill();
    let log = server.log();
    assert!(
        log.contains("DEBUG"),
        "the server logged at debug level:\n{log:.2000}"
    );

    let secrets: Vec<&str> = [&tokens.newsroom, &tokens.county, &wire, &unknown]
        .into_iter()
        .map(String::as_str)
        .collect();
    let dump = database_dump(&dir.path().join("data")).await;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    for token in secrets {
        // The whole token, and its secret part (what follows the prefix kept for listings).
        let secret_part = &token[9..];
        for needle in [token, secret_part] {
            assert!(!log.contains(needle), "a token is in the server log");
            assert!(!cli_log.contains(needle), "a token is in the CLI's log");
            for (column, value) in &dump {
                assert!(
                    !contains(value, needle.as_bytes()),
                    "a token is in {column}"
                );
            }
            for (file, bytes) in &files {
                assert!(!contains(bytes, needle.as_bytes()), "a token is in {file}");
            }
        }
    }
    println!(
        "security: {} log lines, {} database values and {} files searched for 4 tokens",
        log.lines().count(),
        dump.len(),
        files.len()
    );
}
