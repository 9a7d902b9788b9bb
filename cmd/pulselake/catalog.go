package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/catalog"
	"github.com/pulselake/pulselake/internal/lake"
)

func newCatalogCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "catalog",
		Short: "Register external files as tables (crawl), list every table, print DDL for Athena, Trino and Spark",
	}
	cmd.AddCommand(newCatalogCrawlCmd(g), newCatalogListCmd(g), newCatalogDDLCmd(g), newCatalogDropCmd(g))
	return cmd
}

// withStore runs f with the lake store of the data directory.
func withStore(cmd *cobra.Command, g *globals, f func(*lake.Store) error) error {
	cfg, log, err := setup(g)
	if err != nil {
		return err
	}
	st, err := app.OpenLake(cmd.Context(), log, g.dataDir, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	return f(st)
}

func newCatalogCrawlCmd(g *globals) *cobra.Command {
	var o catalog.Options
	var format string
	var check bool
	cmd := &cobra.Command{
		Use:   "crawl --source PATH|URL --zone landing|trusted|curated --table NAME [--check]",
		Short: "Infer the schema, partitions and row count of a folder of JSON-lines, CSV or Parquet files and register it as zone.table",
		Long: `Walks the folder (a path or file:// URL), reads the Parquet footers and a sample of the
rows of every JSON-lines and CSV file, turns hive k=v folders into partition columns and
registers the table; SQL sees it as zone.table, with exactly the registered columns and types.
Crawling a registered table again updates it and reports schema drift (columns added, removed
or changed type); --check reports the drift without changing the table. See docs/catalog.md.`,
		Example: `  pulselake catalog crawl --source ./exports/vitals --zone landing --table vitals
  pulselake query "SELECT day, count(*) FROM landing.vitals GROUP BY day"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Source == "" || o.Name == "" {
				return usagef("give --source (the folder of the files) and --table (the table name)")
			}
			if err := catalog.ValidateName(o.Zone, o.Name); err != nil {
				return usageError{err}
			}
			if format != "" {
				o.Format = catalog.Format(format)
				if !slices.Contains(catalog.Formats, o.Format) {
					return usagef("--format %q: want json, csv or parquet", format)
				}
			}
			var res *catalog.Result
			err := withStore(cmd, g, func(st *lake.Store) error {
				names, err := st.TableNames(cmd.Context(), o.Zone)
				if err != nil {
					return err
				}
				if slices.Contains(names, o.Name) {
					return usagef("%s.%s is an Iceberg table written by pulselake; choose another --table", o.Zone, o.Name)
				}
				if check {
					res, err = catalog.Check(cmd.Context(), g.dataDir, o)
				} else {
					res, err = catalog.Crawl(cmd.Context(), g.dataDir, o)
				}
				return err
			})
			if err != nil {
				return err
			}
			printCrawl(g, res, check)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Source, "source", "", "folder of the files: a path or file:// URL (required)")
	f.StringVar(&o.Zone, "zone", "landing", "zone of the table: landing, trusted or curated")
	f.StringVar(&o.Name, "table", "", "table name: lower-case letters, digits, underscores (required)")
	f.StringVar(&format, "format", "", "json, csv or parquet (default: detected from the file names)")
	f.IntVar(&o.SampleRows, "sample-rows", catalog.DefaultSampleRows, "rows of each JSON or CSV file read to infer types (all rows are counted)")
	f.IntVar(&o.MaxFiles, "max-files", catalog.DefaultMaxFiles, "most files a table may have")
	f.BoolVar(&check, "check", false, "report the schema drift since the last crawl without changing the registered table")
	return cmd
}

func printCrawl(g *globals, res *catalog.Result, check bool) {
	t := res.Table
	verb := "registered"
	switch {
	case check && res.Previous == nil:
		verb = "not registered (--check)"
	case check:
		verb = "checked"
	case res.Previous != nil:
		verb = "updated"
	}
	fmt.Fprintf(g.stdout, "%s %s: %d rows in %d %s files (%s) under %s\n", verb, t.Key(), t.Rows, t.Files, t.Format, catalog.HumanBytes(t.Bytes), t.Location)
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COLUMN\tTYPE\tSQL TYPE\t")
	for _, c := range t.Columns {
		note := ""
		if c.Nested {
			note = "JSON text"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Type, catalog.SQLType(c.Type), note)
	}
	for _, c := range t.Partitions {
		fmt.Fprintf(tw, "%s\t%s\t%s\tpartition\n", c.Name, c.Type, catalog.SQLType(c.Type))
	}
	tw.Flush()
	if res.Previous != nil {
		if res.Drift.Empty() {
			fmt.Fprintf(g.stdout, "schema unchanged since the crawl of %s (rows %d → %d, files %d → %d)\n",
				res.Previous.CrawledAt, res.Previous.Rows, t.Rows, res.Previous.Files, t.Files)
		} else {
			fmt.Fprintf(g.stdout, "schema drift since the crawl of %s:\n%s", res.Previous.CrawledAt, res.Drift)
			if check {
				fmt.Fprintf(g.stdout, "the table keeps the schema of %s until it is crawled again without --check\n", res.Previous.CrawledAt)
			}
		}
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(g.stderr, "warning: %s\n", w)
	}
}

func newCatalogListCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "list [--format table|json]",
		Short: "List every table: Iceberg tables of the lake and crawled external tables",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return usagef("--format %q: want table or json", format)
			}
			return withStore(cmd, g, func(st *lake.Store) error {
				ice, err := st.Tables(cmd.Context())
				if err != nil {
					return err
				}
				ext, err := catalog.List(g.dataDir)
				if err != nil {
					return err
				}
				entries := catalog.Inventory(ice, ext)
				if format == "json" {
					if entries == nil {
						entries = []catalog.Entry{}
					}
					enc := json.NewEncoder(g.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(entries)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ZONE\tNAME\tKIND\tFORMAT\tROWS\tFILES\tSIZE\tLOCATION")
				for _, e := range entries {
					kind := e.Kind
					if e.Shadowed {
						kind += " (hidden by the Iceberg table)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", e.Zone, e.Name, kind, e.Format, e.Rows, e.Files, catalog.HumanBytes(e.Bytes), e.Location)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output: table or json")
	return cmd
}

// splitTable parses ZONE.TABLE; a bare name means trusted, as in SQL.
func splitTable(arg string) (zone, name string) {
	if z, n, ok := strings.Cut(arg, "."); ok {
		return z, n
	}
	return lake.ZoneTrusted, arg
}

func newCatalogDDLCmd(g *globals) *cobra.Command {
	var dialect string
	var o catalog.DDLOptions
	cmd := &cobra.Command{
		Use:   "ddl --dialect athena|trino|spark ZONE.TABLE",
		Short: "Print the statements that let Athena, Trino or Spark query a table over the same files",
		Long: `For a crawled table: CREATE TABLE over its folder with its columns, format and partitions.
For an Iceberg table of the lake: the register-table call of that engine (Athena: the Glue
CreateTable input). --location points the statements at the copy of the files another engine
can reach (Athena needs s3://). See docs/catalog.md.`,
		Example: `  pulselake catalog ddl --dialect athena --location s3://my-bucket/vitals/ landing.vitals
  pulselake catalog ddl --dialect trino trusted.heart_rate`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d := catalog.Dialect(dialect)
			if !slices.Contains(catalog.Dialects, d) {
				return usagef("--dialect %q: want athena, trino or spark", dialect)
			}
			zone, name := splitTable(args[0])
			return withStore(cmd, g, func(st *lake.Store) error {
				var out string
				t, err := st.Load(cmd.Context(), zone, name)
				switch {
				case err == nil:
					out, err = catalog.IcebergDDL(lake.Describe(zone, name, t), d, o)
				case errors.Is(err, lake.ErrNoTable):
					var x *catalog.Table
					x, err = catalog.Get(g.dataDir, zone, name)
					if err != nil {
						return err
					}
					if x == nil {
						return usagef("no table %s.%s (pulselake catalog list shows the tables)", zone, name)
					}
					out, err = catalog.ExternalDDL(*x, d, o)
				}
				if errors.Is(err, catalog.ErrLocalLocation) {
					return usageError{err}
				}
				if err != nil {
					return err
				}
				fmt.Fprint(g.stdout, out)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&dialect, "dialect", "", "athena, trino or spark (required)")
	cmd.Flags().StringVar(&o.Location, "location", "", "location of the files for the other engine (e.g. s3://bucket/prefix/); default the crawled folder")
	cmd.Flags().StringVar(&o.Catalog, "catalog", "", "catalog name in the engine (Trino: hive or iceberg; Spark: spark_catalog)")
	_ = cmd.MarkFlagRequired("dialect")
	return cmd
}

func newCatalogDropCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "drop ZONE.TABLE",
		Short: "Remove a crawled table from the catalog (its files stay where they are)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			zone, name := splitTable(args[0])
			err := catalog.Remove(g.dataDir, zone, name)
			if errors.Is(err, catalog.ErrNoTable) {
				return usagef("%v (pulselake catalog list shows the tables)", err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "dropped %s.%s from the catalog; its files are untouched\n", zone, name)
			return nil
		},
	}
}
