module github.com/kvmc/kvmc/bindings/go

go 1.21
