# One image per binary: docker build --build-arg SERVICE=issuer -t jitid/issuer .
# SERVICE is issuer, policy or audit, or one of the development tools
# jitid-dev (the local CA: `jitid-dev pki`) and jitid-idp (the demo OpenID
# Provider).
FROM golang:1.26-bookworm AS build
ARG SERVICE
WORKDIR /src
COPY . .
RUN case "$SERVICE" in \
	issuer|policy|audit) dir=services/$SERVICE ;; \
	jitid-dev|jitid-idp) dir=dev ;; \
	*) echo "SERVICE must be issuer, policy, audit, jitid-dev or jitid-idp" >&2; exit 1 ;; \
	esac && cd "$dir" && CGO_ENABLED=0 go build -trimpath -o /out/jitid-$SERVICE ./cmd/$SERVICE
# /data and /pki are owned by the runtime user so that a named volume
# mounted there (the audit log, the development CA's files) is writable.
RUN mkdir -p /out/data /out/pki

FROM gcr.io/distroless/static-debian12:nonroot
ARG SERVICE
COPY --from=build /out/jitid-$SERVICE /jitid
COPY --from=build --chown=65532:65532 /out/data /data
COPY --from=build --chown=65532:65532 /out/pki /pki
USER nonroot
ENTRYPOINT ["/jitid"]
