# powcoord container image, packaging a binary built by scripts/release.sh
# (nothing is compiled here):
#
#   scripts/release.sh
#   docker build -t powcoord .                      # or: podman build
#   docker run -d --name powcoord -v powcoord-data:/data \
#       -p 3333:3333 -p 3336:3336 -p 8080:8080 powcoord
#
# The default command is a coordinator on the embedded chain; give your own
# arguments for a pool on a node, e.g.
#   docker run ... powcoord coordinator --data /data --http 0.0.0.0:8080 \
#       --stratum 0.0.0.0:3333 --stratum2 0.0.0.0:3336 \
#       --node http://bitcoind:8332 --node-cookie /bitcoin/.cookie --payout-address bc1q...
# deploy/compose.yaml runs it beside Bitcoin Core; docs/install.md explains.
#
# BASE must provide CA certificates (webhooks over https, stratum+ssl
# pools) and run as a non-root user; distroless "static" is a few MB with
# both (uid 65532). The binary is static (CGO_ENABLED=0): no libc needed.
ARG BASE=gcr.io/distroless/static-debian12:nonroot
FROM ${BASE}
# TARGETOS/TARGETARCH are set by buildx/podman for each --platform.
ARG TARGETOS=linux
ARG TARGETARCH=amd64
COPY --chmod=0755 dist/powcoord-*-${TARGETOS}-${TARGETARCH} /usr/local/bin/powcoord
# /data belongs to the non-root user, so a fresh named volume does too.
COPY --chown=65532:65532 deploy/data-volume.txt /data/README.txt
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
# Stratum V1, Stratum V2, HTTP (dashboard, API, /metrics).
EXPOSE 3333/tcp 3336/tcp 8080/tcp
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/powcoord", "status", "--http", "127.0.0.1:8080", "--timeout", "5s"]
ENTRYPOINT ["/usr/local/bin/powcoord"]
CMD ["coordinator", "--data", "/data", "--stratum", "0.0.0.0:3333", "--stratum2", "0.0.0.0:3336", "--http", "0.0.0.0:8080"]
