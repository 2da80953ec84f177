//go:build !linux

package client

import "github.com/pion/transport/v5"

// arrivalNet stamps nothing where the kernel's receive timestamps are not
// read: packets are stamped when the reader gets them.
type arrivalNet struct {
	transport.Net
	log *arrivalLog
}
