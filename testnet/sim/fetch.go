package main

import (
	"context"
	"io"
)

func fetchCmd(ctx context.Context, args []string, out io.Writer) error { return nil }
