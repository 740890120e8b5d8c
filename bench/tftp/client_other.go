//go:build !linux

package main

import (
	"context"
	"errors"
)

// runEpollClients needs Linux's epoll; elsewhere use -client pin.
func runEpollClients(context.Context, string, int, []file, options) (int64, []error) {
	return 0, []error{errors.New("-client epoll needs Linux: use -client pin")}
}
