# Builds the logbroker binary and runs it on a small Debian base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/logbroker ./cmd/logbroker

FROM debian:bookworm-slim
RUN useradd --system --home /data logbroker && mkdir -p /data && chown logbroker /data
COPY --from=build /out/logbroker /usr/local/bin/logbroker
USER logbroker
VOLUME /data
EXPOSE 1883 8083 8080
ENTRYPOINT ["logbroker"]
CMD ["serve"]
