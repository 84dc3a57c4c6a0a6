FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tuner-cli

FROM debian:bookworm-slim
COPY --from=build /src/target/release/tuner-cli /usr/local/bin/tuner-cli
ENTRYPOINT ["tuner-cli"]
