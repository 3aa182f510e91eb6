package sqlstore

import "database/sql"

// DB lets tests tamper with the stored log as an attacker with database
// access would.
func (s *Store) DB() *sql.DB { return s.db }
