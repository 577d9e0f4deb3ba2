-- The auth schema (DESIGN §6): the claims a token carried reach Row Level Security as the settings
-- request.jwt.claims (JSON) and request.jwt.claims_sig (hex HMAC-SHA256 of those exact bytes under
-- the key in auth.claims_key). CryoProxy sets both at checkout; a client can set them too, so the
-- functions below believe the claims only when the signature verifies and the token has not
-- expired. Only the schema's owner reads the key.
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE SCHEMA IF NOT EXISTS auth;
REVOKE ALL ON SCHEMA auth FROM PUBLIC;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_read, service_write;

CREATE TABLE IF NOT EXISTS auth.claims_key (
  id boolean PRIMARY KEY DEFAULT true CHECK (id), -- one row
  key bytea NOT NULL CHECK (length(key) >= 32),
  set_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON auth.claims_key FROM PUBLIC;

-- Tokens revoked before their expiry, by jti; CryoProxy polls the table and LISTENs for inserts.
CREATE TABLE IF NOT EXISTS auth.revoked_tokens (
  jti text PRIMARY KEY,
  revoked_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz, -- after this the row may be deleted: the token is expired anyway
  reason text
);
REVOKE ALL ON auth.revoked_tokens FROM PUBLIC;

CREATE OR REPLACE FUNCTION auth.notify_revoked() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  PERFORM pg_notify('cryoproxy_revoked_tokens', NEW.jti);
  RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS revoked_tokens_notify ON auth.revoked_tokens;
CREATE TRIGGER revoked_tokens_notify AFTER INSERT OR UPDATE ON auth.revoked_tokens
  FOR EACH ROW EXECUTE FUNCTION auth.notify_revoked();

-- HMAC-SHA256 through pgcrypto, wherever the database keeps it: the schema is looked up once here
-- and written into the function, so no search_path can put another hmac() in its place.
DO $$
DECLARE
  s name;
BEGIN
  SELECT n.nspname INTO STRICT s
    FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
   WHERE e.extname = 'pgcrypto';
  EXECUTE format(
    'CREATE OR REPLACE FUNCTION auth.claims_signature(claims text) RETURNS text'
    || ' LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $f$'
    || ' SELECT encode(%I.hmac(convert_to(claims, ''UTF8''), k.key, ''sha256''), ''hex'')'
    || ' FROM auth.claims_key k WHERE k.id $f$', s);
END
$$;
REVOKE ALL ON FUNCTION auth.claims_signature(text) FROM PUBLIC;

-- The verified claims of this session's token, or NULL: no claims, a signature that does not
-- match, or an expired token.
CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  claims text := current_setting('request.jwt.claims', true);
  sig text := current_setting('request.jwt.claims_sig', true);
  parsed jsonb;
BEGIN
  IF claims IS NULL OR claims = '' OR sig IS NULL OR sig = '' THEN
    RETURN NULL;
  END IF;
  IF auth.claims_signature(claims) IS DISTINCT FROM lower(sig) THEN
    RETURN NULL;
  END IF;
  parsed := claims::jsonb;
  IF jsonb_typeof(parsed -> 'exp') = 'number'
     AND (parsed ->> 'exp')::numeric <= extract(epoch FROM clock_timestamp()) THEN
    RETURN NULL;
  END IF;
  RETURN parsed;
END
$$;

-- Supabase's signatures: the subject as a uuid (NULL when it is not one), as text, the role claim,
-- and whether the token has a scope (space-separated string or JSON array).
CREATE OR REPLACE FUNCTION auth.sub() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT auth.jwt() ->> 'sub'
$$;

CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT CASE WHEN s ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
              THEN s::uuid END
    FROM (SELECT auth.sub() AS s) x
$$;

CREATE OR REPLACE FUNCTION auth.role() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT auth.jwt() ->> 'role'
$$;

CREATE OR REPLACE FUNCTION auth.has_scope(wanted text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT coalesce(
    CASE jsonb_typeof(j -> 'scope')
      WHEN 'string' THEN wanted = ANY (regexp_split_to_array(j ->> 'scope', '\s+'))
      WHEN 'array' THEN (j -> 'scope') ? wanted
    END, false)
    FROM (SELECT auth.jwt() AS j) x
$$;

REVOKE ALL ON FUNCTION auth.jwt(), auth.sub(), auth.uid(), auth.role(), auth.has_scope(text)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth.jwt(), auth.sub(), auth.uid(), auth.role(), auth.has_scope(text)
  TO anon, authenticated, service_read, service_write;
