package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// docker-compose.yml must set only settings that turnd knows, on the host network.
func TestComposeUsesRealSettings(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			NetworkMode string            `yaml:"network_mode"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	turnd, ok := c.Services["turnd"]
	if !ok {
		t.Fatal("docker-compose.yml has no turnd service")
	}
	if turnd.NetworkMode != "host" {
		t.Errorf("turnd network_mode %q, want host (relay port range)", turnd.NetworkMode)
	}
	var known []string
	for _, s := range settings {
		known = append(known, s.env)
	}
	for k := range turnd.Environment {
		if strings.HasPrefix(k, "TURND_") && !slices.Contains(known, k) {
			t.Errorf("docker-compose.yml sets %s, which turnd does not read", k)
		}
	}
}
