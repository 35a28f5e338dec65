# A small image of confab: build with the dist profile, run as a non-root
# user on a distroless base (glibc, CA certificates, nothing else).
#
#   docker build -t confab .
#   docker run -p 8080:8080 -p 6789:6789 -v confab-data:/data confab
#
# Settings: CONFAB_* environment variables (`docker run -e CONFAB_GRACE=30s`)
# or flags after the image name (`docker run confab serve --grace 30s …`,
# which replace the defaults below).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --locked --profile dist -p confab \
 && install -D -m 755 target/dist/confab /out/confab \
 && install -d -m 700 /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/confab /usr/local/bin/confab
# The data volume belongs to the image's non-root user (65532).
COPY --from=build --chown=65532:65532 /out/data /data
VOLUME /data
EXPOSE 8080 6789
USER nonroot
# Ready: the database answers and the server is not draining. With TLS
# (CONFAB_TLS_CERT, CONFAB_TLS_KEY), override it with
#   --health-cmd 'confab healthcheck https://127.0.0.1:8080/readyz'.
HEALTHCHECK --interval=10s --timeout=6s --start-period=10s --retries=3 \
    CMD ["confab", "healthcheck", "http://127.0.0.1:8080/readyz"]
# SIGTERM drains over --drain; give `docker stop` longer than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["confab"]
CMD ["serve", "--http", "0.0.0.0:8080", "--tcp", "0.0.0.0:6789", "--data", "/data"]
