package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/iotagent/iotagent/internal/atomicfile"
)

// TokenFile is the name, in the data dir, of the console's login token
// (mode 0600).
const TokenFile = "console-token"

// tokenBytes is the token's entropy: 32 random bytes, 64 hex digits.
const tokenBytes = 32

// LoadOrCreateToken reads DIR/console-token, creating it with a new random
// token on first start, and makes sure only its owner can read it.
func LoadOrCreateToken(dir string) (string, error) {
	path := filepath.Join(dir, TokenFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		raw := make([]byte, tokenBytes)
		if _, err := rand.Read(raw); err != nil {
			return "", fmt.Errorf("console token: %w", err)
		}
		tok := hex.EncodeToString(raw)
		if err := atomicfile.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("create %s: %w", path, err)
		}
		return tok, nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 32 || strings.Trim(tok, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%s: want at least 32 lowercase hex digits (delete the file to have a new token made)", path)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return "", fmt.Errorf("%s is readable by others and cannot be made 0600: %w", path, err)
		}
	}
	return tok, nil
}

// tokenEqual compares in constant time.
func tokenEqual(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
