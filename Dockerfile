# One image per service: docker build --build-arg SERVICE=issuer -t jitid/issuer .
FROM golang:1.26-bookworm AS build
ARG SERVICE
WORKDIR /src
COPY . .
RUN test -n "$SERVICE" && cd services/$SERVICE && CGO_ENABLED=0 go build -trimpath -o /out/jitid-$SERVICE ./cmd/$SERVICE

FROM gcr.io/distroless/static-debian12:nonroot
ARG SERVICE
COPY --from=build /out/jitid-$SERVICE /jitid
USER nonroot
ENTRYPOINT ["/jitid"]
