# One image with both binaries: sfu (conference, signaling, SFU) and turnd.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/sfu ./cmd/sfu && \
    CGO_ENABLED=0 go build -trimpath -o /out/turnd ./cmd/turnd

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/sfu /out/turnd /usr/local/bin/
COPY configs /etc/parley
USER nobody
ENTRYPOINT ["/usr/local/bin/sfu"]
