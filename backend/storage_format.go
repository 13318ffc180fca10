package backend

import "fmt"

// storageFormat is the layout version of the entries this engine stores
// (config, integrations, roles). Each entry records the format it was written
// in, so that a newer plugin version can upgrade older entries as it reads
// them, and an older version, run again after a downgrade, refuses an entry
// it would misread instead of acting on it.
//
// Formats:
//
//	0  entries written before the field existed; the same layout as 1
//	1  the current layout
const storageFormat = 1

// checkStorageFormat upgrades what needs upgrading in an entry of an older
// format (nothing yet: format 0 and 1 share a layout) and refuses one
// written by a newer version of the plugin.
func checkStorageFormat(what string, format int) error {
	if format > storageFormat {
		return fmt.Errorf("%w: %s was written in storage format %d by a newer version of this plugin, "+
			"and this version reads formats up to %d: move the mount back to that version (vault secrets tune -plugin-version=…)",
			errCorruptEntry, what, format, storageFormat)
	}
	return nil
}
