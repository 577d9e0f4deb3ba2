-- The CryoProtect reference schema (DESIGN §12, the seeds' tables), in 3NF, every foreign key
-- indexed, Row Level Security on every table.
--
-- Access (README, "The CryoProtect schema"; tested by CryoProtectSchemaIT):
--   anon           reads public rows (is_public) and what belongs to them, and the toxicity
--                  reference tables; writes nothing
--   authenticated  reads public rows and its own (created_by = auth.uid()); inserts rows it owns;
--                  updates and deletes its own
--   service_read   reads everything; writes nothing
--   service_write  reads and writes everything
-- Policies call SECURITY DEFINER helpers in schema cryoprotect with a fixed search_path, and wrap
-- auth.uid() in a scalar subquery, so that PostgreSQL evaluates it once per statement, not once
-- per row (the seeds' "RLS policy optimization").

CREATE SCHEMA IF NOT EXISTS cryoprotect;
REVOKE ALL ON SCHEMA cryoprotect FROM PUBLIC;
GRANT USAGE ON SCHEMA cryoprotect TO anon, authenticated, service_read, service_write;

CREATE TABLE IF NOT EXISTS molecules (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL,
  smiles text,
  inchi_key text UNIQUE,
  formula text,
  molecular_weight numeric(12, 4),
  is_public boolean NOT NULL DEFAULT false,
  data jsonb NOT NULL DEFAULT '{}',
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  name_search tsvector GENERATED ALWAYS AS (to_tsvector('simple', name)) STORED
);
CREATE INDEX IF NOT EXISTS molecules_created_by ON molecules (created_by);
CREATE INDEX IF NOT EXISTS molecules_name_search ON molecules USING gin (name_search);
CREATE INDEX IF NOT EXISTS molecules_data ON molecules USING gin (data jsonb_path_ops);
CREATE INDEX IF NOT EXISTS molecules_public_name ON molecules (name) INCLUDE (formula, molecular_weight)
  WHERE is_public;

CREATE TABLE IF NOT EXISTS mixtures (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL,
  description text,
  is_public boolean NOT NULL DEFAULT false,
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS mixtures_created_by ON mixtures (created_by);

CREATE TABLE IF NOT EXISTS mixture_components (
  mixture_id uuid NOT NULL REFERENCES mixtures (id) ON DELETE CASCADE,
  molecule_id uuid NOT NULL REFERENCES molecules (id) ON DELETE CASCADE,
  concentration numeric(12, 6) NOT NULL CHECK (concentration >= 0),
  unit text NOT NULL,
  created_by uuid,
  PRIMARY KEY (mixture_id, molecule_id)
);
CREATE INDEX IF NOT EXISTS mixture_components_molecule ON mixture_components (molecule_id);
CREATE INDEX IF NOT EXISTS mixture_components_created_by ON mixture_components (created_by);

CREATE TABLE IF NOT EXISTS molecular_properties (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  molecule_id uuid NOT NULL REFERENCES molecules (id) ON DELETE CASCADE,
  property_name text NOT NULL,
  numeric_value double precision,
  text_value text,
  unit text,
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS molecular_properties_molecule
  ON molecular_properties (molecule_id, property_name) INCLUDE (numeric_value, unit);
CREATE INDEX IF NOT EXISTS molecular_properties_created_by ON molecular_properties (created_by);

CREATE TABLE IF NOT EXISTS predictions (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  molecule_id uuid NOT NULL REFERENCES molecules (id) ON DELETE CASCADE,
  model_name text NOT NULL,
  property_name text NOT NULL,
  predicted_value double precision NOT NULL,
  confidence double precision CHECK (confidence BETWEEN 0 AND 1),
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS predictions_molecule ON predictions (molecule_id, property_name);
CREATE INDEX IF NOT EXISTS predictions_created_by ON predictions (created_by);

CREATE TABLE IF NOT EXISTS experiments (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL,
  protocol jsonb NOT NULL DEFAULT '{}',
  performed_at date,
  is_public boolean NOT NULL DEFAULT false,
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS experiments_created_by ON experiments (created_by);
CREATE INDEX IF NOT EXISTS experiments_protocol ON experiments USING gin (protocol jsonb_path_ops);

CREATE TABLE IF NOT EXISTS molecule_experiments (
  molecule_id uuid NOT NULL REFERENCES molecules (id) ON DELETE CASCADE,
  experiment_id uuid NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
  result jsonb NOT NULL DEFAULT '{}',
  created_by uuid,
  PRIMARY KEY (molecule_id, experiment_id)
);
CREATE INDEX IF NOT EXISTS molecule_experiments_experiment ON molecule_experiments (experiment_id);
CREATE INDEX IF NOT EXISTS molecule_experiments_created_by ON molecule_experiments (created_by);

CREATE TABLE IF NOT EXISTS molecule_proteins (
  molecule_id uuid NOT NULL REFERENCES molecules (id) ON DELETE CASCADE,
  uniprot_id text NOT NULL,
  affinity_nm double precision,
  created_by uuid,
  PRIMARY KEY (molecule_id, uniprot_id)
);
CREATE INDEX IF NOT EXISTS molecule_proteins_uniprot ON molecule_proteins (uniprot_id);
CREATE INDEX IF NOT EXISTS molecule_proteins_created_by ON molecule_proteins (created_by);

-- Toxicity: reference data (assays and their endpoints) and results per molecule.
CREATE TABLE IF NOT EXISTS toxicity_assays (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL UNIQUE,
  source text NOT NULL,
  description text
);

CREATE TABLE IF NOT EXISTS toxicity_endpoints (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  assay_id integer NOT NULL REFERENCES toxicity_assays (id) ON DELETE CASCADE,
  name text NOT NULL,
  unit text,
  UNIQUE (assay_id, name)
);

CREATE TABLE IF NOT EXISTS toxicity_results (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  molecule_id uuid NOT NULL REFERENCES molecules (id) ON DELETE CASCADE,
  endpoint_id integer NOT NULL REFERENCES toxicity_endpoints (id) ON DELETE CASCADE,
  value double precision,
  active boolean NOT NULL,
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS toxicity_results_molecule
  ON toxicity_results (molecule_id, endpoint_id) INCLUDE (value, active);
CREATE INDEX IF NOT EXISTS toxicity_results_endpoint ON toxicity_results (endpoint_id);
CREATE INDEX IF NOT EXISTS toxicity_results_active ON toxicity_results (molecule_id) WHERE active;
CREATE INDEX IF NOT EXISTS toxicity_results_created_by ON toxicity_results (created_by);

-- Helpers for the policies: SECURITY DEFINER, so a child table's policy can look at its parent
-- without the parent's own policy being evaluated again (and without granting the parent).
CREATE OR REPLACE FUNCTION cryoprotect.molecule_visible(mid uuid, uid uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT EXISTS (SELECT 1 FROM public.molecules m
                 WHERE m.id = mid AND (m.is_public OR m.created_by = uid))
$$;

CREATE OR REPLACE FUNCTION cryoprotect.mixture_visible(xid uuid, uid uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT EXISTS (SELECT 1 FROM public.mixtures x
                 WHERE x.id = xid AND (x.is_public OR x.created_by = uid))
$$;

CREATE OR REPLACE FUNCTION cryoprotect.experiment_visible(eid uuid, uid uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT EXISTS (SELECT 1 FROM public.experiments e
                 WHERE e.id = eid AND (e.is_public OR e.created_by = uid))
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA cryoprotect FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA cryoprotect
  TO anon, authenticated, service_read, service_write;

-- Privileges: what a role may attempt; the policies below decide which rows.
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['molecules', 'mixtures', 'mixture_components', 'molecular_properties',
      'predictions', 'experiments', 'molecule_experiments', 'molecule_proteins',
      'toxicity_assays', 'toxicity_endpoints', 'toxicity_results']
  LOOP
    EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('REVOKE ALL ON public.%I FROM PUBLIC', t);
    EXECUTE format('GRANT SELECT ON public.%I TO anon, authenticated, service_read', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO service_write', t);
    EXECUTE format('DROP POLICY IF EXISTS %I ON public.%I', t || '_service_read', t);
    EXECUTE format('CREATE POLICY %I ON public.%I FOR SELECT TO service_read USING (true)',
      t || '_service_read', t);
    EXECUTE format('DROP POLICY IF EXISTS %I ON public.%I', t || '_service_write', t);
    EXECUTE format(
      'CREATE POLICY %I ON public.%I FOR ALL TO service_write USING (true) WITH CHECK (true)',
      t || '_service_write', t);
  END LOOP;
  -- authenticated users write the tables they own rows of, not the reference data
  FOREACH t IN ARRAY ARRAY['molecules', 'mixtures', 'mixture_components', 'molecular_properties',
      'predictions', 'experiments', 'molecule_experiments', 'molecule_proteins',
      'toxicity_results']
  LOOP
    EXECUTE format('GRANT INSERT, UPDATE, DELETE ON public.%I TO authenticated', t);
    EXECUTE format('DROP POLICY IF EXISTS %I ON public.%I', t || '_own_insert', t);
    EXECUTE format('CREATE POLICY %I ON public.%I FOR INSERT TO authenticated'
      || ' WITH CHECK (created_by = (SELECT auth.uid()))', t || '_own_insert', t);
    EXECUTE format('DROP POLICY IF EXISTS %I ON public.%I', t || '_own_update', t);
    EXECUTE format('CREATE POLICY %I ON public.%I FOR UPDATE TO authenticated'
      || ' USING (created_by = (SELECT auth.uid()))'
      || ' WITH CHECK (created_by = (SELECT auth.uid()))', t || '_own_update', t);
    EXECUTE format('DROP POLICY IF EXISTS %I ON public.%I', t || '_own_delete', t);
    EXECUTE format('CREATE POLICY %I ON public.%I FOR DELETE TO authenticated'
      || ' USING (created_by = (SELECT auth.uid()))', t || '_own_delete', t);
  END LOOP;
END
$$;

-- Reads of anon and authenticated: public rows, and for authenticated also its own.
DROP POLICY IF EXISTS molecules_visible ON molecules;
CREATE POLICY molecules_visible ON molecules FOR SELECT TO anon, authenticated
  USING (is_public OR created_by = (SELECT auth.uid()));
DROP POLICY IF EXISTS mixtures_visible ON mixtures;
CREATE POLICY mixtures_visible ON mixtures FOR SELECT TO anon, authenticated
  USING (is_public OR created_by = (SELECT auth.uid()));
DROP POLICY IF EXISTS experiments_visible ON experiments;
CREATE POLICY experiments_visible ON experiments FOR SELECT TO anon, authenticated
  USING (is_public OR created_by = (SELECT auth.uid()));
DROP POLICY IF EXISTS mixture_components_visible ON mixture_components;
CREATE POLICY mixture_components_visible ON mixture_components FOR SELECT TO anon, authenticated
  USING (created_by = (SELECT auth.uid())
         OR cryoprotect.mixture_visible(mixture_id, (SELECT auth.uid())));
DROP POLICY IF EXISTS molecular_properties_visible ON molecular_properties;
CREATE POLICY molecular_properties_visible ON molecular_properties FOR SELECT
  TO anon, authenticated
  USING (created_by = (SELECT auth.uid())
         OR cryoprotect.molecule_visible(molecule_id, (SELECT auth.uid())));
DROP POLICY IF EXISTS predictions_visible ON predictions;
CREATE POLICY predictions_visible ON predictions FOR SELECT TO anon, authenticated
  USING (created_by = (SELECT auth.uid())
         OR cryoprotect.molecule_visible(molecule_id, (SELECT auth.uid())));
DROP POLICY IF EXISTS molecule_experiments_visible ON molecule_experiments;
CREATE POLICY molecule_experiments_visible ON molecule_experiments FOR SELECT
  TO anon, authenticated
  USING (created_by = (SELECT auth.uid())
         OR cryoprotect.experiment_visible(experiment_id, (SELECT auth.uid()))
            AND cryoprotect.molecule_visible(molecule_id, (SELECT auth.uid())));
DROP POLICY IF EXISTS molecule_proteins_visible ON molecule_proteins;
CREATE POLICY molecule_proteins_visible ON molecule_proteins FOR SELECT TO anon, authenticated
  USING (created_by = (SELECT auth.uid())
         OR cryoprotect.molecule_visible(molecule_id, (SELECT auth.uid())));
DROP POLICY IF EXISTS toxicity_results_visible ON toxicity_results;
CREATE POLICY toxicity_results_visible ON toxicity_results FOR SELECT TO anon, authenticated
  USING (created_by = (SELECT auth.uid())
         OR cryoprotect.molecule_visible(molecule_id, (SELECT auth.uid())));
DROP POLICY IF EXISTS toxicity_assays_visible ON toxicity_assays;
CREATE POLICY toxicity_assays_visible ON toxicity_assays FOR SELECT TO anon, authenticated
  USING (true);
DROP POLICY IF EXISTS toxicity_endpoints_visible ON toxicity_endpoints;
CREATE POLICY toxicity_endpoints_visible ON toxicity_endpoints FOR SELECT TO anon, authenticated
  USING (true);

-- Materialized views of public data, each with a unique index so that it can be refreshed
-- CONCURRENTLY (readers are never blocked; made populated, as CONCURRENTLY needs). A materialized view has no RLS: these hold public
-- rows only, and are granted to everyone who may read public rows.
CREATE MATERIALIZED VIEW IF NOT EXISTS public_molecules AS
  SELECT m.id, m.name, m.formula, m.molecular_weight, m.inchi_key,
         count(p.id) AS property_count
  FROM molecules m LEFT JOIN molecular_properties p ON p.molecule_id = m.id
  WHERE m.is_public
  GROUP BY m.id;
CREATE UNIQUE INDEX IF NOT EXISTS public_molecules_id ON public_molecules (id);

CREATE MATERIALIZED VIEW IF NOT EXISTS toxicity_summary AS
  SELECT r.molecule_id,
         count(DISTINCT e.assay_id) AS assays_tested,
         count(*) FILTER (WHERE r.active) AS active_results,
         count(*) AS results,
         max(r.value) AS max_value,
         min(r.value) FILTER (WHERE r.active) AS min_active_value
  FROM toxicity_results r
  JOIN toxicity_endpoints e ON e.id = r.endpoint_id
  JOIN molecules m ON m.id = r.molecule_id AND m.is_public
  GROUP BY r.molecule_id;
CREATE UNIQUE INDEX IF NOT EXISTS toxicity_summary_molecule ON toxicity_summary (molecule_id);

REVOKE ALL ON public_molecules, toxicity_summary FROM PUBLIC;
GRANT SELECT ON public_molecules, toxicity_summary
  TO anon, authenticated, service_read, service_write;

-- Writes from anywhere reach the result cache of every CryoProxy (V4).
SELECT cryoproxy.enable_cache_invalidation(t::regclass)
FROM unnest(ARRAY['molecules', 'mixtures', 'mixture_components', 'molecular_properties',
  'predictions', 'experiments', 'molecule_experiments', 'molecule_proteins', 'toxicity_assays',
  'toxicity_endpoints', 'toxicity_results']) AS t;

-- Realistic volumes for benchmarks and the demo: SELECT cryoprotect.generate(100000) makes that
-- many molecules (a third public, the rest owned by one of 100 users), ten properties and two
-- predictions each, 20 assays of 5 endpoints, 5 toxicity results per molecule, 1,000 mixtures of
-- 3 to 5 components, 200 experiments of 20 molecules, and 2 protein targets per tenth molecule;
-- then refreshes the materialized views. Deterministic for a given count (setseed).
CREATE OR REPLACE FUNCTION cryoprotect.generate(n_molecules integer DEFAULT 100000)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  owners uuid[];
BEGIN
  PERFORM setseed(0.42);
  SELECT array_agg(md5('cryoprotect-user-' || i)::uuid ORDER BY i) INTO owners
  FROM generate_series(1, 100) i;
  INSERT INTO toxicity_assays (name, source, description)
  SELECT 'assay-' || a, (ARRAY['Tox21', 'ToxCast', 'ECHA'])[1 + a % 3], 'generated assay ' || a
  FROM generate_series(1, 20) a
  ON CONFLICT (name) DO NOTHING;
  INSERT INTO toxicity_endpoints (assay_id, name, unit)
  SELECT t.id, 'endpoint-' || e, (ARRAY['uM', 'mg/kg', '%'])[1 + e % 3]
  FROM toxicity_assays t, generate_series(1, 5) e
  ON CONFLICT (assay_id, name) DO NOTHING;
  INSERT INTO molecules (id, name, smiles, inchi_key, formula, molecular_weight, is_public, data,
                         created_by)
  SELECT md5('molecule-' || i)::uuid,
         (ARRAY['glycerol', 'trehalose', 'dimethyl sulfoxide', 'ethylene glycol', 'sucrose',
                'propanediol', 'proline', 'betaine'])[1 + i % 8] || ' analogue ' || i,
         'C' || repeat('CO', 1 + i % 7),
         upper(substr(md5('inchi-' || i), 1, 14)) || '-' || upper(substr(md5('k' || i), 1, 10)),
         'C' || (2 + i % 12) || 'H' || (6 + i % 20) || 'O' || (1 + i % 6),
         50 + (i % 5000) / 10.0,
         i % 3 = 0,
         jsonb_build_object('class', (ARRAY['cpa', 'sugar', 'amino acid'])[1 + i % 3],
                            'toxic', i % 11 = 0, 'batch', i % 50),
         CASE WHEN i % 3 = 0 THEN NULL ELSE owners[1 + i % 100] END
  FROM generate_series(1, n_molecules) i
  ON CONFLICT (id) DO NOTHING;
  INSERT INTO molecular_properties (molecule_id, property_name, numeric_value, unit, created_by)
  SELECT m.id, (ARRAY['logP', 'tpsa', 'hbd', 'hba', 'rotatable_bonds', 'melting_point',
                      'glass_transition', 'viscosity', 'osmolality', 'permeability'])[p],
         round((random() * 100)::numeric, 3)::double precision,
         (ARRAY['', 'A2', '', '', '', 'K', 'K', 'mPa s', 'mOsm/kg', 'cm/s'])[p], m.created_by
  FROM molecules m, generate_series(1, 10) p;
  INSERT INTO predictions (molecule_id, model_name, property_name, predicted_value, confidence,
                           created_by)
  SELECT m.id, 'model-' || k, 'toxicity_score', random(), 0.5 + random() / 2, m.created_by
  FROM molecules m, generate_series(1, 2) k;
  INSERT INTO toxicity_results (molecule_id, endpoint_id, value, active, created_by)
  SELECT m.id, e.id, random() * 100, random() < 0.2, m.created_by
  FROM molecules m
  CROSS JOIN LATERAL (SELECT id FROM toxicity_endpoints
                      ORDER BY md5(m.id::text || id) LIMIT 5) e;
  INSERT INTO mixtures (id, name, description, is_public, created_by)
  SELECT md5('mixture-' || x)::uuid, 'mixture ' || x, 'generated', x % 2 = 0,
         CASE WHEN x % 2 = 0 THEN NULL ELSE owners[1 + x % 100] END
  FROM generate_series(1, 1000) x
  ON CONFLICT (id) DO NOTHING;
  INSERT INTO mixture_components (mixture_id, molecule_id, concentration, unit, created_by)
  SELECT md5('mixture-' || x)::uuid, md5('molecule-' || (1 + (x * 7 + c * 13) % n_molecules))::uuid,
         round((random() * 5)::numeric, 4), 'mol/L',
         CASE WHEN x % 2 = 0 THEN NULL ELSE owners[1 + x % 100] END
  FROM generate_series(1, 1000) x, generate_series(1, 3 + x % 3) c
  ON CONFLICT DO NOTHING;
  INSERT INTO experiments (id, name, protocol, performed_at, is_public, created_by)
  SELECT md5('experiment-' || e)::uuid, 'experiment ' || e,
         jsonb_build_object('cooling_rate', e % 10, 'method', 'vitrification'),
         date '2026-01-01' + e, e % 2 = 0,
         CASE WHEN e % 2 = 0 THEN NULL ELSE owners[1 + e % 100] END
  FROM generate_series(1, 200) e
  ON CONFLICT (id) DO NOTHING;
  INSERT INTO molecule_experiments (molecule_id, experiment_id, result, created_by)
  SELECT md5('molecule-' || (1 + (e * 31 + k) % n_molecules))::uuid, md5('experiment-' || e)::uuid,
         jsonb_build_object('viability', round((random() * 100)::numeric, 1)),
         CASE WHEN e % 2 = 0 THEN NULL ELSE owners[1 + e % 100] END
  FROM generate_series(1, 200) e, generate_series(1, 20) k
  ON CONFLICT DO NOTHING;
  INSERT INTO molecule_proteins (molecule_id, uniprot_id, affinity_nm, created_by)
  SELECT m.id, 'P' || lpad((abs(hashtext(m.id::text || k)) % 99999)::text, 5, '0'),
         random() * 1000, m.created_by
  FROM molecules m, generate_series(1, 2) k
  WHERE m.molecular_weight * 10 % 10 = 0
  ON CONFLICT DO NOTHING;
  REFRESH MATERIALIZED VIEW public_molecules;
  REFRESH MATERIALIZED VIEW toxicity_summary;
  RETURN (SELECT count(*) FROM molecules);
END
$$;
REVOKE ALL ON FUNCTION cryoprotect.generate(integer) FROM PUBLIC;
