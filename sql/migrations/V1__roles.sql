-- Roles (DESIGN §6, §12). Clients log in to CryoProxy; CryoProxy logs in to PostgreSQL as the role a
-- token maps to. None of these roles can bypass Row Level Security or administer the database.
-- Passwords are not set here: the operator sets them (ALTER ROLE ... PASSWORD) and gives CryoProxy
-- the same secrets through users_file or auth_query.
DO $$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['authenticator', 'anon', 'authenticated', 'service_read', 'service_write']
  LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I LOGIN', r);
    END IF;
    -- Also for roles that existed before: least privilege, whatever they had.
    EXECUTE format(
      'ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', r);
  END LOOP;
END
$$;

-- The login applications name (PostgREST's convention): it may become any of the mapped roles and
-- holds no privileges of its own.
ALTER ROLE authenticator NOINHERIT;
GRANT anon, authenticated, service_read, service_write TO authenticator;

GRANT USAGE ON SCHEMA public TO anon, authenticated, service_read, service_write;
