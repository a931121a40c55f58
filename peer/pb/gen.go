// Package pb holds the wire messages of the chordshare protocols.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative ring.proto block.proto repair.proto
