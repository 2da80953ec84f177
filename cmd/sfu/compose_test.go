package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composeFile is the part of docker-compose.yml the tests check.
type composeFile struct {
	Services map[string]struct {
		NetworkMode string            `yaml:"network_mode"`
		Environment map[string]string `yaml:"environment"`
	} `yaml:"services"`
}

// readCompose parses the repository's docker-compose.yml.
func readCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// docker-compose.yml must set only settings that sfu knows, on the host network.
func TestComposeUsesRealSettings(t *testing.T) {
	c := readCompose(t)
	sfu, ok := c.Services["sfu"]
	if !ok {
		t.Fatal("docker-compose.yml has no sfu service")
	}
	if sfu.NetworkMode != "host" {
		t.Errorf("sfu network_mode %q, want host (media ports)", sfu.NetworkMode)
	}
	known := []string{envKeys}
	for _, o := range options {
		known = append(known, o.env())
	}
	for k := range sfu.Environment {
		if strings.HasPrefix(k, "PARLEY_") && !slices.Contains(known, k) {
			t.Errorf("docker-compose.yml sets %s, which sfu does not read", k)
		}
	}
}
