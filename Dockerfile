# One image per service: docker build --build-arg SERVICE=issuer -t jitid/issuer .
FROM golang:1.26-bookworm AS build
ARG SERVICE
WORKDIR /src
COPY . .
RUN test -n "$SERVICE" && cd services/$SERVICE && CGO_ENABLED=0 go build -trimpath -o /out/jitid-$SERVICE ./cmd/$SERVICE
# /data is owned by the runtime user so that a named volume mounted there
# (the audit log) is writable.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG SERVICE
COPY --from=build /out/jitid-$SERVICE /jitid
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot
ENTRYPOINT ["/jitid"]
