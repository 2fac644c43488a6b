package main

import (
	"context"
	"errors"
	"io"
)

func runCoordinator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("coordinator: not implemented yet")
}
