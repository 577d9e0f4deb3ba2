-- What bench/seeds.sh found on 100,000 molecules: two reads that Row Level Security kept off
-- their indexes.
--
-- 1. Counting or listing what a user may see: the molecules policy reads is_public and
--    created_by, which only the table had, so every such read scanned the heap (3,300 pages).
--    With both in one index the policy is evaluated from the index alone (index-only scan).
CREATE INDEX IF NOT EXISTS molecules_visibility ON molecules (is_public, created_by);

-- 2. Full-text search: PostgreSQL evaluates a policy before any condition of the query whose
--    operator is not LEAKPROOF, and tsvector @@ tsquery is not, so under RLS the GIN index on
--    molecules.name_search cannot be used and a search scans every row. Searching the public
--    catalogue is what the materialized view of public data is for: it has no RLS, so it gets
--    the name vector and its own GIN index. (A user's own molecules are few: they are searched
--    on the table through the created_by index.)
DROP MATERIALIZED VIEW IF EXISTS public_molecules;
CREATE MATERIALIZED VIEW public_molecules AS
  SELECT m.id, m.name, m.formula, m.molecular_weight, m.inchi_key, m.name_search,
         count(p.id) AS property_count
  FROM molecules m LEFT JOIN molecular_properties p ON p.molecule_id = m.id
  WHERE m.is_public
  GROUP BY m.id;
CREATE UNIQUE INDEX public_molecules_id ON public_molecules (id);
CREATE INDEX public_molecules_name_search ON public_molecules USING gin (name_search);
CREATE INDEX public_molecules_name ON public_molecules (name);
REVOKE ALL ON public_molecules FROM PUBLIC;
GRANT SELECT ON public_molecules TO anon, authenticated, service_read, service_write;
