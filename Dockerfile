# Build: a full Rust toolchain, only in this stage.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY sql ./sql
# docs/openapi.json is built into the binary (GET /openapi.json).
COPY docs/openapi.json ./docs/openapi.json
RUN cargo build --release --locked \
 && mkdir -p /data

# Run: glibc + libgcc and nothing else (no shell, no package manager), as a non-root user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/hookbox /usr/local/bin/hookbox
# An empty /data owned by the runtime user: a new named volume copies this ownership.
COPY --from=build --chown=65532:65532 /data /data
USER 65532:65532
# SQLITE_TMPDIR: where SQLite spills the sorts of a schema migration (on the data volume, which the
# runtime user can write; the files are removed as soon as the migration ends).
ENV DATABASE_URL=sqlite:////data/app.db \
    SQLITE_TMPDIR=/data \
    HOST=0.0.0.0 \
    PORT=8000
EXPOSE 8000
VOLUME ["/data"]
# The binary is its own probe: the image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/hookbox", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/hookbox"]
