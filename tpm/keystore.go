package tpm

import "fmt"

// OpenKeyStore opens the key store the configuration names: kind "file" is
// a FileStore for the PEM file at keyPath, kind "tpm" is OpenTPM(t). Both
// implement Generator.
func OpenKeyStore(kind, keyPath string, t TPMConfig) (KeyStore, error) {
	switch kind {
	case "file":
		if keyPath == "" {
			return nil, fmt.Errorf("open key store: kind \"file\" needs a key path")
		}
		return NewFileStore(keyPath), nil
	case "tpm":
		s, err := OpenTPM(t)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("open key store: unknown kind %q: want \"file\" or \"tpm\"", kind)
}
