// Package e2e runs jitid's three services as real processes over a real
// Redis and a real NATS JetStream and checks the guarantees of DESIGN.md from
// the outside, through the gRPC API and the stores.
package e2e
