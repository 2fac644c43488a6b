package hasher

//go:generate go run ./asmgen -dir .
