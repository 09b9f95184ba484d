# syntax=docker/dockerfile:1
# kseal-controller (and the kseal CLI) in a minimal, non-root image.
#
# The binaries are built with the `dist` profile (fat LTO, one codegen unit, stripped,
# panic=abort) for the gnu target linked statically (crt-static): the musl target is not
# available on our build machines, and a static gnu binary needs no libc in the image.
# CI builds exactly these binaries with scripts/build-dist.sh and checks they run and
# have no dynamic dependencies (there is no container engine on CI to build the image).
#
#   docker build -t kseal-controller:0.1.0 .

FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN bash scripts/build-dist.sh /out

# distroless static: no shell, no package manager, no libc; a nonroot user (65532),
# CA certificates and tzdata.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kseal-controller /out/kseal /usr/local/bin/
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/kseal-controller"]
CMD ["run"]
