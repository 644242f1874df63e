package lb

import (
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
)

// Tables left behind. Each node's nftables balancer owns a table named for it,
// and its rules outlive the daemon on purpose (a restart interrupts no
// traffic). A node that is gone, though, must not keep taking traffic: its
// table would DNAT a VIP or published port that a new service may be given,
// to backends long dead. ListTables and DeleteTable let the daemon find and
// remove the tables of nodes that no longer exist.

// TableInfo is one nftables table (family ip) found by ListTables.
type TableInfo struct {
	Name string
	// Owner is the Config.Owner its rules carry; "" for a table written
	// without one (or by an older version).
	Owner string
}

// ListTables lists the tables (family ip) of cfg's namespace whose names
// start with prefix.
func ListTables(cfg Config, prefix string) ([]TableInfo, error) {
	c, err := nftConn(cfg)
	if err != nil {
		return nil, err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("nftables: list tables: %w", err)
	}
	var out []TableInfo
	for _, tb := range tables {
		if !strings.HasPrefix(tb.Name, prefix) {
			continue
		}
		info := TableInfo{Name: tb.Name}
		// The owner is in the last prerouting rule's comment; a table we cannot
		// read is listed without one, so it is never taken for ours.
		if rules, err := c.GetRules(tb, &nftables.Chain{Name: nftPrerouting, Table: tb}); err == nil && len(rules) > 0 {
			if cm, ok := userdata.GetString(rules[len(rules)-1].UserData, userdata.TypeComment); ok && strings.HasPrefix(cm, "swarmlet ") {
				for _, f := range strings.Fields(cm) {
					if v, ok := strings.CutPrefix(f, "owner="); ok {
						info.Owner = v
					}
				}
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// DeleteTable deletes the table name (family ip) with everything in it; a
// table that does not exist is no error.
func DeleteTable(cfg Config, name string) error {
	c, err := nftConn(cfg)
	if err != nil {
		return err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("nftables: list tables: %w", err)
	}
	for _, tb := range tables {
		if tb.Name == name {
			c.DelTable(tb)
			if err := c.Flush(); err != nil {
				return fmt.Errorf("nftables: delete table %s: %w", name, err)
			}
		}
	}
	return nil
}
