# One image for every Parta process: the broker, the services, the gateway,
# and Redis. compose.yaml gives each container its command. The first stage
# builds with `make all` (which also builds and links the tests); the second
# has only the runtime libraries, redis-server and the Parta binaries.
#
#   docker build -t parta .
#   docker compose up --build

FROM debian:12-slim AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        gcc make libc6-dev pkg-config protobuf-c-compiler \
        libprotobuf-c-dev libczmq-dev libzmq3-dev libhiredis-dev libsqlite3-dev \
        libsodium-dev libjansson-dev libwebsockets-dev libwebsockets-evlib-ev libev-dev \
        libmagic-dev libstemmer-dev libcmocka-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# A build/ directory copied from the host must not pass for an up-to-date build.
RUN make clean && make -j"$(nproc)" all

FROM debian:12-slim
ARG DEBIAN_FRONTEND=noninteractive
# The shared libraries the binaries are linked against (tests/static checks
# this list against the built binaries; lws loads its libev glue,
# libwebsockets-evlib-ev, at run time), and Redis for the redis service.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        libczmq4 libzmq5 libprotobuf-c1 libhiredis0.14 libsqlite3-0 libsodium23 \
        libjansson4 libwebsockets17 libwebsockets-evlib-ev libev4 libmagic1 libstemmer0d \
        redis-server \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build \
        /src/build/bin/parta-broker \
        /src/build/bin/parta-identity \
        /src/build/bin/parta-org \
        /src/build/bin/parta-invite \
        /src/build/bin/parta-chat \
        /src/build/bin/parta-meet \
        /src/build/bin/parta-audit \
        /src/build/bin/parta-gateway \
        /usr/local/bin/
# Named volumes start as a copy of what the image has at their mount point,
# owner included: /var/lib/parta (data) and /keys (CURVE keys) belong to parta.
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/parta --shell /usr/sbin/nologin parta \
 && mkdir -p /var/lib/parta /keys \
 && chown parta:parta /var/lib/parta /keys \
 && chmod 700 /keys
USER parta
WORKDIR /var/lib/parta
ENV PARTA_DATA=/var/lib/parta
EXPOSE 8080
