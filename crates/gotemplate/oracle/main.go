// Renders load balancer templates the way airshipit/sip did (html/template over its model), so
// sip's tests can compare their Go template rendering with Go's own. Reads a JSON list of
// {"template": "...", "data": {...}} on stdin and writes a JSON list of {"out": "..."} or
// {"error": "..."}, one per request, in order.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"os"
)

// The predecessor's model: corev1.ContainerPort's fields, in their order, and its server.
type containerPort struct {
	Name          string
	HostPort      int32
	ContainerPort int32
	Protocol      string
	HostIP        string
}

type server struct {
	IP   string
	Name string
}

type proxy struct {
	ContainerPorts []containerPort
	Servers        []server
}

type request struct {
	Template string `json:"template"`
	Data     proxy  `json:"data"`
}

type result struct {
	Out   *string `json:"out,omitempty"`
	Error *string `json:"error,omitempty"`
}

func render(req request) result {
	fail := func(err error) result {
		msg := err.Error()
		return result{Error: &msg}
	}
	tmpl, err := template.New("haproxy-config").Parse(req.Template)
	if err != nil {
		return fail(err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, req.Data); err != nil {
		return fail(err)
	}
	s := out.String()
	return result{Out: &s}
}

func main() {
	var reqs []request
	if err := json.NewDecoder(os.Stdin).Decode(&reqs); err != nil {
		fmt.Fprintln(os.Stderr, "reading the requests:", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(reqs))
	for _, req := range reqs {
		results = append(results, render(req))
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "writing the results:", err)
		os.Exit(2)
	}
}
