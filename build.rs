//! Compiles `proto/` with protox (no system `protoc`) into tonic code and a
//! file descriptor set for gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // google/rpc/*.proto are the standard error model (google.rpc.Status and its
    // details); tonic-types already has their Rust types, so only ours are generated.
    let protos = [
        "proto/feedpub/v1/publisher.proto",
        "proto/google/rpc/error_details.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    // `sqlx::migrate!` embeds the migrations: a new one must rebuild the crate.
    println!("cargo:rerun-if-changed=src/storage/migrations");
    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("feedpub_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .extern_path(".google.rpc", "::tonic_types::pb")
        // A request that does not decode is INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::grpc::codec::Codec")
        .compile_fds(descriptors)?;
    Ok(())
}
