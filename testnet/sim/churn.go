package main

import (
	"context"
	"io"
)

func churnCmd(ctx context.Context, args []string, out io.Writer) error { return nil }
func fetchCmd(ctx context.Context, args []string, out io.Writer) error { return nil }
