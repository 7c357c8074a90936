// A Go HTTP app that serves the socket sup holds for it.
//
//	go build -o held_socket examples/held_socket.go
//	sup start ./held_socket --name go --listen 127.0.0.1:8080
//
// sup passes the socket as fd 3 (LISTEN_FDS=1, LISTEN_PID=<this pid>); on
// SIGTERM the app stops accepting and finishes the requests in flight.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func listener() (net.Listener, error) {
	if os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) && os.Getenv("LISTEN_FDS") != "" {
		return net.FileListener(os.NewFile(3, "held"))
	}
	return net.Listen("tcp", "127.0.0.1:8080")
}

func main() {
	ln, err := listener()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from pid %d\n", os.Getpid())
	})}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM)
		<-stop
		srv.Shutdown(context.Background())
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
