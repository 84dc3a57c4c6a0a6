# Builder stage: the release binary (dashboard assets and migrations are compiled in).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tuner-cli

# Runtime: the one binary on a slim Debian, as an unprivileged user.
FROM debian:bookworm-slim
RUN useradd --system --home-dir /var/lib/tuner --create-home tuner
COPY --from=build /src/target/release/tuner-cli /usr/local/bin/tuner-cli
USER tuner
WORKDIR /var/lib/tuner
VOLUME ["/var/lib/tuner"]
EXPOSE 8470
ENTRYPOINT ["tuner-cli"]
CMD ["serve", "--addr", "0.0.0.0:8470", "--db", "/var/lib/tuner/tuner.db"]
