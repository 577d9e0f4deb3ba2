package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.auth0.jwt.JWT;
import com.auth0.jwt.JWTCreator;
import com.auth0.jwt.algorithms.Algorithm;
import com.fasterxml.jackson.databind.JsonNode;
import com.zaxxer.hikari.HikariDataSource;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.interfaces.ECPrivateKey;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.auth.Jwk;
import org.cryoprotect.proxy.examples.TokenPoolExample;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * JWT logins through transaction pooling: a token as the password of {@code authenticator} logs the
 * server connection in as the role the token maps to, its claims reach Row Level Security signed
 * (so a client cannot forge them), and every bad token is refused with 28000 while the proxy goes
 * on serving everyone else. Keys and the database side come from {@code cryoproxy keys generate}
 * and {@code cryoproxy migrate}, as a user would make them.
 */
@PgTest
class JwtLoginIT {
  static final String A = "0b5e2f64-0d3c-4f8e-9d55-7a1f7b6c0a01";
  static final String B = "6c1d9a7e-3b2f-4a60-8e19-2f0c4d5b6e02";
  static PgCluster pg;
  static RunningProxy proxy;
  static JsonNode privateKey;
  static JsonNode otherKey; // a key the proxy's JWKS does not list
  @TempDir static Path dir;
  @TempDir static Path otherDir;

  @BeforeAll
  static void start(PgCluster cluster) throws Exception {
    pg = cluster;
    pg.createDatabase("jwtapp");
    assertThat(
            cli(
                new org.cryoprotect.proxy.cli.Main(),
                "keys",
                "generate",
                "--alg",
                "ES256",
                "--out",
                dir.toString(),
                "--kid",
                "k1"))
        .isZero();
    assertThat(
            cli(
                new org.cryoprotect.proxy.cli.Main(),
                "keys",
                "generate",
                "--alg",
                "ES256",
                "--out",
                otherDir.toString(),
                "--kid",
                "k2"))
        .isZero();
    privateKey = Jwk.json().readTree(dir.resolve("k1.jwk.json").toFile());
    otherKey = Jwk.json().readTree(otherDir.resolve("k2.jwk.json").toFile());
    Path migrateConfig = dir.resolve("migrate.yaml");
    Files.writeString(
        migrateConfig,
        "migrate: { user: postgres, password: "
            + PgCluster.SUPERUSER_PASSWORD
            + " }\n"
            + RunningProxy.database("app", "jwtapp", "127.0.0.1", pg.primary().port()));
    assertThat(
            cli(
                new org.cryoprotect.proxy.cli.Main(),
                "migrate",
                "--config",
                migrateConfig.toString(),
                "--claims-key",
                dir.resolve("claims.key").toString()))
        .isZero();
    pg.primary()
        .sql(
            "jwtapp",
            "ALTER ROLE authenticated PASSWORD 'auth-pw';"
                + " ALTER ROLE anon PASSWORD 'anon-pw';"
                + " ALTER ROLE service_read PASSWORD 'read-pw';"
                + " ALTER ROLE service_write PASSWORD 'write-pw';"
                + " CREATE TABLE notes (owner uuid NOT NULL, body text NOT NULL);"
                + " ALTER TABLE notes ENABLE ROW LEVEL SECURITY;"
                + " CREATE POLICY notes_own ON notes FOR SELECT TO authenticated"
                + " USING (owner = (SELECT auth.uid()));"
                + " CREATE POLICY notes_service ON notes FOR SELECT TO service_read USING (true);"
                + " GRANT SELECT ON notes TO authenticated, service_read;"
                + " INSERT INTO notes VALUES ('"
                + A
                + "', 'a1'), ('"
                + A
                + "', 'a2'),"
                + " ('"
                + B
                + "', 'b1'), ('"
                + B
                + "', 'b2'), ('"
                + B
                + "', 'b3')");
    Files.writeString(
        dir.resolve("users.txt"),
        "\"authenticated\" \"auth-pw\"\n\"anon\" \"anon-pw\"\n\"service_read\" \"read-pw\"\n"
            + "\"service_write\" \"write-pw\"\n");
    proxy =
        RunningProxy.start(
            "pool: { mode: transaction, size: 2, wait_timeout: 20s }\n"
                + "auth:\n"
                + "  type: scram-sha-256\n"
                + "  users_file: "
                + dir.resolve("users.txt")
                + "\n"
                + "  jwt:\n"
                + "    users: authenticator\n"
                + "    oauthbearer_users: oauth_app\n"
                + "    allow_plaintext: loopback\n"
                + "    jwks_file: "
                + dir.resolve("jwks.json")
                + "\n"
                + "    algorithms: ES256\n"
                + "    issuer: cryoproxy\n"
                + "    audience: cryoprotect\n"
                + "    max_token_bytes: 4096\n"
                + "    claims_key_file: "
                + dir.resolve("claims.key")
                + "\n"
                + "    roles:\n"
                + "      authenticated: authenticated\n"
                + "      anon: anon\n"
                + "      service_role:\n"
                + "        - { scope: \"cryo:write\", role: service_write }\n"
                + "        - { scope: \"cryo:read\", role: service_read }\n"
                + RunningProxy.database("app", "jwtapp", "127.0.0.1", pg.primary().port())
                + "  fixed:\n    dbname: jwtapp\n    primary: { host: 127.0.0.1, port: "
                + pg.primary().port()
                + " }\n    user: postgres\n    password: "
                + PgCluster.SUPERUSER_PASSWORD
                + "\n");
  }

  @AfterAll
  static void stop() {
    if (proxy != null) {
      proxy.close();
    }
  }

  static int cli(Object command, String... args) {
    return new CommandLine(command)
        .setOut(new java.io.PrintWriter(new ByteArrayOutputStream()))
        .execute(args);
  }

  /** A token signed with {@code key} (k1 unless said), valid for 10 minutes, then {@code more}. */
  static String token(JsonNode key, Consumer<JWTCreator.Builder> more) throws Exception {
    Instant now = Instant.now();
    JWTCreator.Builder b =
        JWT.create()
            .withKeyId(key.path("kid").asText())
            .withIssuer("cryoproxy")
            .withAudience("cryoprotect")
            .withIssuedAt(now)
            .withExpiresAt(now.plusSeconds(600))
            .withJWTId(UUID.randomUUID().toString());
    more.accept(b);
    return b.sign(Algorithm.ECDSA256(null, (ECPrivateKey) Jwk.privateKey(key)));
  }

  static String user(String sub) throws Exception {
    return token(privateKey, b -> b.withSubject(sub).withClaim("role", "authenticated"));
  }

  static Connection login(String token) throws SQLException {
    return proxy.connect("app", "authenticator", token);
  }

  static List<String> row(Statement s, String sql) throws SQLException {
    try (ResultSet rs = s.executeQuery(sql)) {
      List<String> row = new ArrayList<>();
      if (rs.next()) {
        for (int i = 1; i <= rs.getMetaData().getColumnCount(); i++) {
          row.add(rs.getString(i));
        }
      }
      return row;
    }
  }

  /**
   * The acceptance scale: 50 subjects in 200 client connections over 5 server connections, 100,000
   * queries through transaction pooling, each answered with exactly its own subject's rows.
   */
  /** The CryoProtect tables (V5), in the order the access matrix lists them. */
  static final List<String> CRYOPROTECT_TABLES =
      List.of(
          "molecules",
          "mixtures",
          "experiments",
          "mixture_components",
          "molecular_properties",
          "predictions",
          "molecule_experiments",
          "molecule_proteins",
          "toxicity_results",
          "toxicity_assays",
          "toxicity_endpoints");

  static final Set<String> REFERENCE_TABLES = Set.of("toxicity_assays", "toxicity_endpoints");

  /**
   * Issue #16's access matrix, through the proxy with JWT logins: for every CryoProtect table and
   * each of anon, two authenticated subjects, service_read and service_write, what SELECT, INSERT,
   * UPDATE and DELETE do. Rows: one public (no owner), one of A, one of B, and unrelated private
   * rows of a third user. Expected, as the README's matrix says:
   *
   * <ul>
   *   <li>SELECT: anon the public row; A and B the public row and their own; the service roles all.
   *   <li>INSERT of a row owned by oneself: authenticated yes (not into the reference tables, and
   *       never a row owned by another: 42501), service_write yes, anon and service_read 42501.
   *   <li>UPDATE and DELETE: authenticated its own row only (the reference tables: 42501),
   *       service_write every row, anon and service_read 42501.
   * </ul>
   */
  @Test
  void theCryoProtectAccessMatrixHolds() throws Exception {
    String c = "3f0e3c2a-9d1b-4c55-8a7e-1b2c3d4e5f60";
    pg.primary()
        .sql(
            "jwtapp",
            String.join(
                ";\n",
                "INSERT INTO molecules (id, name, is_public, created_by) VALUES"
                    + " ('00000000-0000-0000-0000-0000000000a0', 'public', true, NULL),"
                    + " ('00000000-0000-0000-0000-0000000000a1', 'of a', false, '"
                    + A
                    + "'),"
                    + " ('00000000-0000-0000-0000-0000000000a2', 'of b', false, '"
                    + B
                    + "')",
                "INSERT INTO molecules (id, name, is_public, created_by) SELECT md5('extra-' || i)::uuid,"
                    + " 'extra ' || i, false,"
                    + " '"
                    + c
                    + "' FROM generate_series(1, 20) i",
                "INSERT INTO mixtures (id, name, is_public, created_by) VALUES"
                    + " ('00000000-0000-0000-0000-0000000000b0', 'public', true, NULL),"
                    + " ('00000000-0000-0000-0000-0000000000b1', 'of a', false, '"
                    + A
                    + "'),"
                    + " ('00000000-0000-0000-0000-0000000000b2', 'of b', false, '"
                    + B
                    + "')",
                "INSERT INTO experiments (id, name, is_public, created_by) VALUES"
                    + " ('00000000-0000-0000-0000-0000000000c0', 'public', true, NULL),"
                    + " ('00000000-0000-0000-0000-0000000000c1', 'of a', false, '"
                    + A
                    + "'),"
                    + " ('00000000-0000-0000-0000-0000000000c2', 'of b', false, '"
                    + B
                    + "')",
                children(
                    "mixture_components (mixture_id, molecule_id, concentration, unit,"
                        + " created_by)",
                    "'00000000-0000-0000-0000-0000000000b%1$s',"
                        + " '00000000-0000-0000-0000-0000000000a%1$s', 1, 'M', %2$s"),
                children(
                    "molecular_properties (molecule_id, property_name, created_by)",
                    "'00000000-0000-0000-0000-0000000000a%1$s', 'logP', %2$s"),
                children(
                    "predictions (molecule_id, model_name, property_name, predicted_value,"
                        + " created_by)",
                    "'00000000-0000-0000-0000-0000000000a%1$s', 'm', 'p', 1," + " %2$s"),
                children(
                    "molecule_experiments (molecule_id, experiment_id, created_by)",
                    "'00000000-0000-0000-0000-0000000000a%1$s',"
                        + " '00000000-0000-0000-0000-0000000000c%1$s', %2$s"),
                children(
                    "molecule_proteins (molecule_id, uniprot_id, created_by)",
                    "'00000000-0000-0000-0000-0000000000a%1$s', 'P%1$s', %2$s"),
                "INSERT INTO toxicity_assays (name, source) VALUES ('matrix', 'test')",
                "INSERT INTO toxicity_endpoints (assay_id, name) SELECT id, 'ld50' FROM"
                    + " toxicity_assays WHERE name = 'matrix'",
                children(
                    "toxicity_results (molecule_id, endpoint_id, value, active, created_by)",
                    "'00000000-0000-0000-0000-0000000000a%1$s', (SELECT id FROM"
                        + " toxicity_endpoints WHERE name = 'ld50'), 1, true, %2$s")));
    Map<String, Long> total = new LinkedHashMap<>();
    for (String t : CRYOPROTECT_TABLES) {
      total.put(
          t, Long.parseLong(pg.primary().sql("jwtapp", "SELECT count(*) FROM " + t).get(0).get(0)));
    }
    Map<String, String> tokens = new LinkedHashMap<>();
    tokens.put("anon", token(privateKey, b -> b.withSubject("anon").withClaim("role", "anon")));
    tokens.put("a", user(A));
    tokens.put("b", user(B));
    tokens.put(
        "service_read",
        token(
            privateKey,
            b ->
                b.withSubject(A)
                    .withClaim("role", "service_role")
                    .withClaim("scope", "cryo:read")));
    tokens.put(
        "service_write",
        token(
            privateKey,
            b ->
                b.withSubject(A)
                    .withClaim("role", "service_role")
                    .withClaim("scope", "cryo:write")));
    List<String> wrong = new ArrayList<>();
    int checks = 0;
    for (Map.Entry<String, String> who : tokens.entrySet()) {
      String p = who.getKey();
      String uid = p.equals("a") ? A : p.equals("b") ? B : null;
      boolean user = uid != null;
      boolean writer = p.equals("service_write");
      boolean service = p.startsWith("service");
      try (Connection conn = login(who.getValue())) {
        int n = 0;
        for (String t : CRYOPROTECT_TABLES) {
          boolean reference = REFERENCE_TABLES.contains(t);
          long all = total.get(t);
          // SELECT
          String select = reference || service ? String.valueOf(all) : user ? "2" : "1";
          checks += expect(wrong, conn, p, t, "select", "SELECT count(*) FROM " + t, select);
          // INSERT of a row owned by the principal
          String owner = uid == null ? "NULL" : "'" + uid + "'";
          String insert = insertInto(t, owner, ++n);
          String inserted = writer || user && !reference ? "1" : "42501";
          checks += expect(wrong, conn, p, t, "insert", insert, inserted);
          if (user && !reference) {
            String forOther = insertInto(t, "'" + (p.equals("a") ? B : A) + "'", ++n + 50_000);
            checks += expect(wrong, conn, p, t, "insert for another", forOther, "42501");
          }
          // UPDATE and DELETE of every row the principal can reach
          String set = reference ? "name = name" : "created_by = created_by";
          String changed = writer ? String.valueOf(all) : user && !reference ? "1" : "42501";
          checks += expect(wrong, conn, p, t, "update", "UPDATE " + t + " SET " + set, changed);
          checks += expect(wrong, conn, p, t, "delete", "DELETE FROM " + t, changed);
        }
      }
    }
    System.out.printf(
        "[JwtLoginIT] CryoProtect access matrix: %d checks over %d tables and 5 principals, %d"
            + " wrong%n",
        checks, CRYOPROTECT_TABLES.size(), wrong.size());
    assertThat(wrong).isEmpty();
  }

  /** Three rows of a child table: of the public parent (no owner), of A's, of B's. */
  static String children(String table, String valuesFormat) {
    List<String> rows = new ArrayList<>();
    String[] owners = {"NULL", "'" + A + "'", "'" + B + "'"};
    for (int i = 0; i < 3; i++) {
      rows.add("(" + String.format(valuesFormat, i, owners[i]) + ")");
    }
    return "INSERT INTO " + table + " VALUES " + String.join(", ", rows);
  }

  /** One new row for {@code table}, owned by {@code owner} (SQL), unique by {@code k}. */
  static String insertInto(String table, String owner, int k) {
    String pub = "'00000000-0000-0000-0000-0000000000a0'";
    String endpoint = "(SELECT id FROM toxicity_endpoints WHERE name = 'ld50')";
    return switch (table) {
      case "molecules" -> "INSERT INTO molecules (name, created_by) VALUES ('new', " + owner + ")";
      case "mixtures" -> "INSERT INTO mixtures (name, created_by) VALUES ('new', " + owner + ")";
      case "experiments" ->
          "INSERT INTO experiments (name, created_by) VALUES ('new', " + owner + ")";
      case "mixture_components" ->
          "INSERT INTO mixture_components (mixture_id, molecule_id, concentration, unit,"
              + " created_by) VALUES ('00000000-0000-0000-0000-0000000000b0', md5('extra-"
              + (1 + k % 20)
              + "')::uuid, 1, 'M', "
              + owner
              + ")";
      case "molecular_properties" ->
          "INSERT INTO molecular_properties (molecule_id, property_name, created_by) VALUES ("
              + pub
              + ", 'x', "
              + owner
              + ")";
      case "predictions" ->
          "INSERT INTO predictions (molecule_id, model_name, property_name, predicted_value,"
              + " created_by) VALUES ("
              + pub
              + ", 'm', 'p', 1, "
              + owner
              + ")";
      case "molecule_experiments" ->
          "INSERT INTO molecule_experiments (molecule_id, experiment_id, created_by) VALUES"
              + " (md5('extra-"
              + (1 + k % 20)
              + "')::uuid,"
              + " '00000000-0000-0000-0000-0000000000c0', "
              + owner
              + ")";
      case "molecule_proteins" ->
          "INSERT INTO molecule_proteins (molecule_id, uniprot_id, created_by) VALUES ("
              + pub
              + ", 'Q"
              + k
              + "', "
              + owner
              + ")";
      case "toxicity_results" ->
          "INSERT INTO toxicity_results (molecule_id, endpoint_id, value, active, created_by)"
              + " VALUES ("
              + pub
              + ", "
              + endpoint
              + ", 1, true, "
              + owner
              + ")";
      case "toxicity_assays" ->
          "INSERT INTO toxicity_assays (name, source) VALUES ('a" + k + "', 's')";
      case "toxicity_endpoints" ->
          "INSERT INTO toxicity_endpoints (assay_id, name) SELECT id, 'e"
              + k
              + "' FROM toxicity_assays WHERE name = 'matrix'";
      default -> throw new IllegalArgumentException(table);
    };
  }

  /**
   * Runs {@code sql} in a transaction that is rolled back, so every check starts from the same
   * rows; the outcome is the row count (of a SELECT count(*), or the rows changed) or the SQLSTATE.
   * Returns 1 (one check) and notes a mismatch in {@code wrong}.
   */
  static int expect(
      List<String> wrong,
      Connection c,
      String who,
      String table,
      String what,
      String sql,
      String expected)
      throws SQLException {
    String outcome;
    c.setAutoCommit(false);
    try (Statement s = c.createStatement()) {
      if (s.execute(sql)) {
        try (ResultSet rs = s.getResultSet()) {
          rs.next();
          outcome = rs.getString(1);
        }
      } else {
        outcome = String.valueOf(s.getUpdateCount());
      }
    } catch (SQLException e) {
      outcome = e.getSQLState();
    } finally {
      c.rollback();
      c.setAutoCommit(true);
    }
    if (!outcome.equals(expected)) {
      wrong.add(who + " " + what + " " + table + ": " + outcome + ", expected " + expected);
    }
    return 1;
  }

  /**
   * The result cache with JWT logins (issue #15, acceptance 2): two subjects run the same SQL on an
   * RLS table whose policy reads the signed claims, through one proxy with the cache on. The claims
   * are session settings, so they are in the cache key: each subject gets only its rows, from the
   * cache, and never the other's.
   */
  @Test
  void theResultCacheKeepsSubjectsApart() throws Exception {
    pg.primary().sql("jwtapp", "SELECT cryoproxy.enable_cache_invalidation('notes')");
    String config =
        Files.readString(proxy.configFile())
                .replaceAll("listen: \\{[^}]*\\}\\n", "")
                .replaceAll("admin: \\{[^}]*\\}\\n", "")
            + "cache:\n  enabled: true\n  rules:\n    - { tables: [public.notes], ttl: 60s }\n";
    int queries = Integer.getInteger("cryoproxy.cache.queries", 100_000);
    AtomicLong foreign = new AtomicLong();
    try (RunningProxy cached = RunningProxy.start(config)) {
      long hitsBefore = cached.server().cache().hits();
      ExecutorService threads = Executors.newFixedThreadPool(4);
      List<Future<Integer>> work = new ArrayList<>();
      for (int t = 0; t < 4; t++) {
        boolean isA = t % 2 == 0;
        String token = user(isA ? A : B);
        List<String> own = isA ? List.of("a1,a2") : List.of("b1,b2,b3");
        work.add(
            threads.submit(
                () -> {
                  int done = 0;
                  try (Connection c = cached.connect("app", "authenticator", token);
                      java.sql.PreparedStatement ps =
                          c.prepareStatement(
                              "SELECT string_agg(body, ',' ORDER BY body) FROM notes")) {
                    for (int q = 0; q < queries / 4; q++) {
                      try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        if (!own.equals(List.of(String.valueOf(rs.getString(1))))) {
                          foreign.incrementAndGet();
                        }
                      }
                      done++;
                    }
                  }
                  return done;
                }));
      }
      int done = 0;
      for (Future<Integer> f : work) {
        done += f.get(300, TimeUnit.SECONDS);
      }
      threads.shutdown();
      long hits = cached.server().cache().hits() - hitsBefore;
      System.out.printf(
          "[JwtLoginIT] cache on, two subjects: %d queries, %d foreign or missing rows, %d hits%n",
          done, foreign.get(), hits);
      assertThat(done).isEqualTo(queries / 4 * 4);
      assertThat(foreign.get()).isZero();
      assertThat(hits).as("served by the cache").isGreaterThan(done / 2);
    }
  }

  @Test
  void eachSubjectSeesOnlyItsRowsThroughSharedServerConnections() throws Exception {
    int subjects = 50;
    int clients = 200;
    int queriesEach = Integer.getInteger("cryoproxy.jwt.queries", 500); // per client
    StringBuilder rows = new StringBuilder();
    List<String> ids = new ArrayList<>();
    List<String> expected = new ArrayList<>();
    for (int i = 0; i < subjects; i++) {
      String id =
          UUID.nameUUIDFromBytes(("subject-" + i).getBytes(StandardCharsets.UTF_8)).toString();
      ids.add(id);
      List<String> bodies = new ArrayList<>();
      for (int k = 0; k <= i % 3; k++) {
        bodies.add("s" + i + "-" + k);
        rows.append(rows.length() == 0 ? "" : ", ")
            .append("('" + id + "', 's" + i + "-" + k + "')");
      }
      expected.add(String.join(",", bodies));
    }
    pg.primary()
        .sql(
            "jwtapp",
            "CREATE TABLE many_notes (owner uuid NOT NULL, body text NOT NULL);"
                + " ALTER TABLE many_notes ENABLE ROW LEVEL SECURITY;"
                + " CREATE POLICY many_notes_own ON many_notes FOR SELECT TO authenticated"
                + " USING (owner = (SELECT auth.uid()));"
                + " GRANT SELECT ON many_notes TO authenticated;"
                + " INSERT INTO many_notes VALUES "
                + rows);
    List<String> tokens = new ArrayList<>();
    for (String id : ids) {
      tokens.add(user(id));
    }
    String config =
        Files.readString(proxy.configFile())
            .replace("size: 2,", "size: 5,")
            .replaceAll("listen: \\{[^}]*\\}\\n", "")
            .replaceAll("admin: \\{[^}]*\\}\\n", "");
    assertThat(config).contains("size: 5,");
    long start = System.nanoTime();
    int queries = 0;
    // However many clients, at most the pool's five server connections for the role: sampled
    // while the clients run, not counting the backends the class's other proxy already had.
    String others =
        String.join(
            ",",
            pg.primary()
                .sql(
                    "jwtapp",
                    "SELECT coalesce(string_agg(pid::text, ','), '0') FROM pg_stat_activity"
                        + " WHERE usename = 'authenticated'")
                .get(0));
    try (RunningProxy five = RunningProxy.start(config)) {
      ExecutorService threads = Executors.newFixedThreadPool(clients);
      List<Future<Integer>> work = new ArrayList<>();
      for (int i = 0; i < clients; i++) {
        int subject = i % subjects;
        work.add(
            threads.submit(
                () -> {
                  int checked = 0;
                  try (Connection c = five.connect("app", "authenticator", tokens.get(subject));
                      Statement s = c.createStatement()) {
                    for (int q = 0; q < queriesEach; q++) {
                      List<String> r =
                          row(
                              s,
                              "SELECT auth.uid()::text, string_agg(body, ',' ORDER BY body)"
                                  + " FROM many_notes");
                      assertThat(r).containsExactly(ids.get(subject), expected.get(subject));
                      checked++;
                    }
                  }
                  return checked;
                }));
      }
      int most = 0;
      while (!work.stream().allMatch(Future::isDone)) {
        most =
            Math.max(
                most,
                Integer.parseInt(
                    pg.primary()
                        .sql(
                            "jwtapp",
                            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'authenticated'"
                                + " AND pid NOT IN ("
                                + others
                                + ")")
                        .get(0)
                        .get(0)));
        Thread.sleep(100);
      }
      for (Future<Integer> f : work) {
        queries += f.get(300, TimeUnit.SECONDS);
      }
      threads.shutdown();
      System.out.printf("[JwtLoginIT] server connections of the role, most seen: %d%n", most);
      assertThat(most).isBetween(1, 5);
    }
    System.out.printf(
        "[JwtLoginIT] %d clients (%d subjects) over a pool of 5: %d queries in %d ms,"
            + " 0 rows of another subject%n",
        clients, subjects, queries, TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start));
    assertThat(queries).isEqualTo(clients * queriesEach);
  }

  @Test
  void theServiceRoleMapsByScopeAndCannotClimb() throws Exception {
    String reader =
        token(
            privateKey,
            b ->
                b.withSubject(A).withClaim("role", "service_role").withClaim("scope", "cryo:read"));
    try (Connection c = login(reader);
        Statement s = c.createStatement()) {
      assertThat(row(s, "SELECT current_user, count(*) FROM notes"))
          .containsExactly("service_read", "5");
      assertThatThrownBy(() -> s.execute("SET ROLE service_write"))
          .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("42501"));
      s.execute("RESET ROLE");
      assertThat(row(s, "SELECT current_user")).containsExactly("service_read");
      // Claims set by the client are not believed: no signature. (One transaction: on one server
      // connection, whatever the pool does between transactions.)
      c.setAutoCommit(false);
      s.execute("SELECT set_config('request.jwt.claims', '{\"sub\":\"" + B + "\"}', false)");
      assertThat(row(s, "SELECT auth.uid()::text")).containsExactly((String) null);
      c.rollback();
    }
    String writer =
        token(
            privateKey,
            b ->
                b.withSubject("batch")
                    .withClaim("role", "service_role")
                    .withClaim("scope", "cryo:read cryo:write"));
    try (Connection c = login(writer);
        Statement s = c.createStatement()) {
      assertThat(row(s, "SELECT current_user, auth.sub()"))
          .containsExactly("service_write", "batch");
    }
  }

  @Test
  void badTokensAreRefusedWith28000AndOthersGoOn() throws Exception {
    String good = user(A);
    String otherSigned = token(otherKey, b -> b.withSubject(A).withClaim("role", "authenticated"));
    String[] parts = good.split("\\.");
    String forgedPayload =
        java.util.Base64.getUrlEncoder()
            .withoutPadding()
            .encodeToString(
                ("{\"sub\":\""
                        + B
                        + "\",\"role\":\"authenticated\",\"iss\":\"cryoproxy\","
                        + "\"aud\":\"cryoprotect\",\"exp\":"
                        + (Instant.now().getEpochSecond() + 600)
                        + "}")
                    .getBytes(StandardCharsets.UTF_8));
    Map<String, String> bad = new LinkedHashMap<>();
    bad.put(
        "expired",
        token(
            privateKey,
            b ->
                b.withSubject(A)
                    .withClaim("role", "authenticated")
                    .withIssuedAt(Instant.now().minusSeconds(7200))
                    .withExpiresAt(Instant.now().minusSeconds(3600))));
    bad.put(
        "not yet valid",
        token(
            privateKey,
            b ->
                b.withSubject(A)
                    .withClaim("role", "authenticated")
                    .withNotBefore(Instant.now().plusSeconds(3600))));
    bad.put(
        "wrong audience",
        token(
            privateKey,
            b -> b.withSubject(A).withClaim("role", "authenticated").withAudience("other")));
    bad.put(
        "wrong issuer",
        token(
            privateKey,
            b -> b.withSubject(A).withClaim("role", "authenticated").withIssuer("evil")));
    bad.put("unknown kid", otherSigned);
    bad.put(
        "alg none",
        JWT.create()
            .withKeyId("k1")
            .withSubject(A)
            .withClaim("role", "authenticated")
            .withExpiresAt(Instant.now().plusSeconds(600))
            .sign(Algorithm.none()));
    bad.put(
        "HS256 with the public key",
        JWT.create()
            .withKeyId("k1")
            .withIssuer("cryoproxy")
            .withAudience("cryoprotect")
            .withSubject(A)
            .withClaim("role", "authenticated")
            .withExpiresAt(Instant.now().plusSeconds(600))
            .sign(Algorithm.HMAC256(Files.readAllBytes(dir.resolve("jwks.json")))));
    bad.put("payload changed after signing", parts[0] + "." + forgedPayload + "." + parts[2]);
    bad.put("garbage", "this is not a token");
    bad.put(
        "too large",
        token(
            privateKey,
            b ->
                b.withSubject(A)
                    .withClaim("role", "authenticated")
                    .withClaim("pad", "x".repeat(5000))));
    bad.put(
        "unmapped role", token(privateKey, b -> b.withSubject(A).withClaim("role", "superuser")));
    bad.put(
        "service role without a scope",
        token(privateKey, b -> b.withSubject(A).withClaim("role", "service_role")));
    for (Map.Entry<String, String> e : bad.entrySet()) {
      assertThatThrownBy(() -> login(e.getValue()).close())
          .as(e.getKey())
          .isInstanceOf(SQLException.class)
          .satisfies(
              x -> assertThat(((SQLException) x).getSQLState()).as(e.getKey()).isEqualTo("28000"));
    }
    assertThatThrownBy(() -> proxy.connect("app", "authenticator", "").close())
        .isInstanceOf(SQLException.class);
    // A database with a fixed server login would run the token's session as that login.
    assertThatThrownBy(() -> proxy.connect("fixed", "authenticator", good).close())
        .isInstanceOf(SQLException.class)
        .satisfies(x -> assertThat(((SQLException) x).getSQLState()).isEqualTo("28000"))
        .hasMessageContaining("does not take token logins");
    try (Connection c = login(good);
        Statement s = c.createStatement()) {
      assertThat(row(s, "SELECT auth.uid()::text")).containsExactly(A);
    }
    String metrics =
        new String(
            proxy.adminUri("/metrics").toURL().openStream().readAllBytes(), StandardCharsets.UTF_8);
    for (String reason : List.of("expired", "bad_audience", "unknown_kid", "too_large")) {
      assertThat(metric(metrics, "cryoproxy_tokens_rejected_total{reason=\"" + reason + "\"}"))
          .as(reason)
          .isPositive();
    }
    assertThat(metrics).contains("cryoproxy_tokens_rejected_total{reason=\"revoked\"}");
    for (String reason :
        List.of(
            "expired",
            "not_yet_valid",
            "bad_audience",
            "bad_issuer",
            "unknown_kid",
            "bad_signature",
            "malformed",
            "too_large",
            "unmapped_role")) {
      assertThat(metrics).as(reason).contains("reason=\"token_" + reason + "\"");
    }
  }

  static double metric(String exposition, String series) {
    return exposition
        .lines()
        .filter(l -> l.startsWith(series + " "))
        .mapToDouble(l -> Double.parseDouble(l.substring(series.length() + 1).trim()))
        .findFirst()
        .orElse(-1);
  }

  static String metrics(RunningProxy p) throws Exception {
    return new String(
        p.adminUri("/metrics").toURL().openStream().readAllBytes(), StandardCharsets.UTF_8);
  }

  /**
   * {@code cryoproxy token revoke}: the NOTIFY reaches the proxy, the next login with the token is
   * refused (28000, counted as revoked) even though the token sits in the verification cache, and a
   * session already logged in with it ends at its next transaction.
   */
  @Test
  void aRevokedTokenIsRefusedAtLoginAndEndsItsSession() throws Exception {
    String jti = UUID.randomUUID().toString();
    String t =
        token(privateKey, b -> b.withSubject(A).withClaim("role", "authenticated").withJWTId(jti));
    double hitsBefore = metric(metrics(proxy), "cryoproxy_token_cache_hits_total");
    try (Connection c = login(t);
        Statement s = c.createStatement()) {
      assertThat(row(s, "SELECT auth.uid()::text")).containsExactly(A);
      login(t).close(); // the second login with the token: from the verification cache
      assertThat(metric(metrics(proxy), "cryoproxy_token_cache_hits_total"))
          .isGreaterThan(hitsBefore);
      double revokedBefore =
          metric(metrics(proxy), "cryoproxy_tokens_rejected_total{reason=\"revoked\"}");
      long revokedAt = System.nanoTime();
      assertThat(
              cli(
                  new org.cryoprotect.proxy.cli.Main(),
                  "token",
                  "revoke",
                  "--config",
                  dir.resolve("migrate.yaml").toString(),
                  "--reason",
                  "test",
                  jti))
          .isZero();
      org.awaitility.Awaitility.await()
          .atMost(Duration.ofSeconds(5))
          .pollInterval(Duration.ofMillis(20))
          .until(
              () -> {
                try {
                  login(t).close();
                  return false;
                } catch (SQLException e) {
                  return "28000".equals(e.getSQLState())
                      && e.getMessage().contains("token revoked");
                }
              });
      System.out.printf(
          "[JwtLoginIT] revoked token refused %d ms after `token revoke`%n",
          TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - revokedAt));
      assertThatThrownBy(() -> row(s, "SELECT 1"))
          .isInstanceOf(SQLException.class)
          .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("28000"))
          .hasMessageContaining("token revoked");
      String m = metrics(proxy);
      assertThat(metric(m, "cryoproxy_tokens_rejected_total{reason=\"revoked\"}"))
          .isGreaterThan(revokedBefore);
      assertThat(metric(m, "cryoproxy_revoked_tokens")).isGreaterThanOrEqualTo(1);
      assertThat(metric(m, "cryoproxy_revocation_list_age_seconds")).isBetween(0.0, 15.0);
    }
  }

  /**
   * The README's HikariCP recipe, run: each physical connection logs in with the token the file
   * holds at that moment, so a pool moves to a new token as its connections are replaced.
   */
  @Test
  void theReadmesHikariRecipeLogsInWithTheCurrentToken() throws Exception {
    Path tokenFile = dir.resolve("app.token");
    Files.writeString(tokenFile, user(A) + "\n");
    try (HikariDataSource ds =
        TokenPoolExample.pool(
            "jdbc:postgresql://127.0.0.1:" + proxy.port() + "/app",
            tokenFile,
            Duration.ofMinutes(15))) {
      try (Connection c = ds.getConnection();
          Statement s = c.createStatement()) {
        assertThat(row(s, "SELECT current_user, auth.uid()::text"))
            .containsExactly("authenticated", A);
      }
      Files.writeString(tokenFile, user(B) + "\n"); // the token issuer rotated it
      ds.getHikariPoolMXBean().softEvictConnections(); // what maxLifetime does, now
      try (Connection c = ds.getConnection();
          Statement s = c.createStatement()) {
        assertThat(row(s, "SELECT auth.uid()::text")).containsExactly(B);
      }
    }
    String readme = Files.readString(Path.of("..", "README.md"));
    for (String example : List.of("TokenFilePlugin", "TokenPoolExample")) {
      String source =
          Files.readString(
              Path.of("src/test/java/org/cryoprotect/proxy/examples", example + ".java"));
      String body = source.substring(source.indexOf("public final class"));
      assertThat(readme).as("README shows %s as tested", example).contains(body);
    }
  }

  /**
   * Acceptance 7, the recipe under time: tokens live 48 s and the issuer rewrites the token file
   * every 5 s; HikariCP's {@code maxLifetime} (32 s, from the recipe) replaces each connection
   * before its token expires. Four application threads query for three token lifetimes: not one
   * query may fail, and every answer must come from a session whose token was still valid ({@code
   * auth.uid()} is NULL once {@code exp} has passed). {@code cryoproxy.jwt.hikariLifetimes} (3)
   * shortens or skips (0) it: the CI's PostgreSQL 15 pass skips it.
   */
  @Test
  void aHikariPoolRunsThreeTokenLifetimesWithoutAFailedQuery() throws Exception {
    int lifetimes = Integer.getInteger("cryoproxy.jwt.hikariLifetimes", 3);
    Assumptions.assumeTrue(lifetimes > 0, "skipped by property");
    Duration life = Duration.ofSeconds(48);
    Path tokenFile = dir.resolve("rotating.token");
    Consumer<Path> issue =
        file -> {
          try {
            String t =
                token(
                    privateKey,
                    b ->
                        b.withSubject(A)
                            .withClaim("role", "authenticated")
                            .withExpiresAt(Instant.now().plus(life)));
            Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
            Files.writeString(tmp, t + "\n");
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE);
          } catch (Exception e) {
            throw new IllegalStateException(e);
          }
        };
    issue.accept(tokenFile);
    ScheduledExecutorService issuer = Executors.newSingleThreadScheduledExecutor();
    ExecutorService app = Executors.newFixedThreadPool(4);
    AtomicLong ok = new AtomicLong();
    ConcurrentLinkedQueue<String> failures = new ConcurrentLinkedQueue<>();
    Set<String> tokensSeen = ConcurrentHashMap.newKeySet();
    long end = System.nanoTime() + life.multipliedBy(lifetimes).toNanos();
    try (HikariDataSource ds =
        TokenPoolExample.pool(
            "jdbc:postgresql://127.0.0.1:" + proxy.port() + "/app", tokenFile, life)) {
      issuer.scheduleAtFixedRate(() -> issue.accept(tokenFile), 5, 5, TimeUnit.SECONDS);
      List<Future<?>> runs = new ArrayList<>();
      for (int i = 0; i < 4; i++) {
        runs.add(
            app.submit(
                () -> {
                  while (System.nanoTime() < end) {
                    try (Connection c = ds.getConnection();
                        Statement s = c.createStatement()) {
                      List<String> r = row(s, "SELECT auth.uid()::text, auth.jwt()->>'jti'");
                      if (A.equals(r.get(0))) {
                        ok.incrementAndGet();
                        tokensSeen.add(r.get(1));
                      } else {
                        failures.add("answer " + r);
                      }
                      Thread.sleep(20);
                    } catch (SQLException e) {
                      failures.add(e.getSQLState() + " " + e.getMessage());
                    }
                  }
                  return null;
                }));
      }
      for (Future<?> run : runs) {
        run.get(life.multipliedBy(lifetimes).toSeconds() + 60, TimeUnit.SECONDS);
      }
    } finally {
      issuer.shutdownNow();
      app.shutdownNow();
    }
    System.out.printf(
        "[JwtLoginIT] HikariCP over %d token lifetimes of %d s: %d queries answered, %d failed,"
            + " %d tokens in use%n",
        lifetimes, life.toSeconds(), ok.get(), failures.size(), tokensSeen.size());
    assertThat(failures).as("failed application queries").isEmpty();
    assertThat(ok.get()).as("queries answered").isGreaterThan(1_000L * lifetimes);
    // Ten connections replaced every 32 s: new tokens came into use as the run went on.
    assertThat(tokensSeen).as("tokens the sessions ran with").hasSizeGreaterThan(lifetimes);
  }

  /**
   * {@code allow_plaintext: loopback}: the same token, on a proxy listening on every address, is
   * accepted from 127.0.0.1 and refused (28000, counted as {@code plaintext}) from the machine's
   * own non-loopback address, where it would have crossed a network in the clear.
   */
  @Test
  void aTokenWithoutTlsIsRefusedFromANonLoopbackAddress() throws Exception {
    java.net.InetAddress remote =
        java.util.Collections.list(java.net.NetworkInterface.getNetworkInterfaces()).stream()
            .flatMap(i -> java.util.Collections.list(i.getInetAddresses()).stream())
            .filter(a -> a instanceof java.net.Inet4Address && !a.isLoopbackAddress())
            .findFirst()
            .orElseThrow(() -> new AssertionError("this machine has no non-loopback IPv4 address"));
    String config =
        "listen: { host: 0.0.0.0, port: 0 }\n"
            + Files.readString(proxy.configFile())
                .replaceAll("listen: \\{[^}]*\\}\\n", "")
                .replaceAll("admin: \\{[^}]*\\}\\n", "");
    String t = user(A);
    try (RunningProxy open = RunningProxy.start(config)) {
      try (Connection c = open.connect("app", "authenticator", t);
          Statement s = c.createStatement()) {
        assertThat(row(s, "SELECT auth.uid()::text")).containsExactly(A);
      }
      java.util.Properties props = new java.util.Properties();
      props.setProperty("user", "authenticator");
      props.setProperty("password", t);
      props.setProperty("sslmode", "disable");
      String url = "jdbc:postgresql://" + remote.getHostAddress() + ":" + open.port() + "/app";
      assertThatThrownBy(() -> java.sql.DriverManager.getConnection(url, props).close())
          .as("a token over plain TCP from %s", remote)
          .isInstanceOf(SQLException.class)
          .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("28000"))
          .hasMessageContaining("only over TLS");
      assertThat(metric(metrics(open), "cryoproxy_tokens_rejected_total{reason=\"plaintext\"}"))
          .isEqualTo(1);
    }
  }

  static byte[] saslInitial(String mechanism, String data) {
    byte[] m = mechanism.getBytes(StandardCharsets.UTF_8);
    byte[] d = data.getBytes(StandardCharsets.UTF_8);
    java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(m.length + 1 + 4 + d.length);
    b.put(m).put((byte) 0).putInt(d.length).put(d);
    return org.cryoprotect.proxy.testing.WireClient.message('p', b.array());
  }

  static org.cryoprotect.proxy.testing.WireClient oauthClient() throws Exception {
    var c = new org.cryoprotect.proxy.testing.WireClient(proxy.port());
    c.send(
        org.cryoprotect.proxy.testing.WireClient.startupPacket(
            3 << 16, org.cryoprotect.proxy.testing.WireClient.params("oauth_app", "app")));
    var offer = c.read();
    assertThat(offer.type()).isEqualTo('R');
    assertThat(offer.authCode()).as("AuthenticationSASL").isEqualTo(10);
    assertThat(new String(offer.body(), 4, offer.body().length - 4, StandardCharsets.UTF_8))
        .isEqualTo("OAUTHBEARER\0\0");
    return c;
  }

  /**
   * The second carrier, SASL OAUTHBEARER as PostgreSQL 18 speaks it (RFC 7628), at protocol level:
   * a good token logs in as its mapped role; a bad one gets the RFC's error challenge and, after
   * the client's acknowledgement, 28000.
   */
  @Test
  void theOauthbearerCarrierLogsInWithATokenOverSasl() throws Exception {
    try (var c = oauthClient()) {
      c.send(saslInitial("OAUTHBEARER", "n,,\u0001auth=Bearer " + user(A) + "\u0001\u0001"));
      assertThat(c.readUntilReady()).isNull();
      var r = c.ask("SELECT current_user, auth.uid()::text");
      assertThat(r.rows()).containsExactly(List.of("authenticated", A));
    }
    String forged = token(otherKey, b -> b.withSubject(A).withClaim("role", "authenticated"));
    for (String initial :
        List.of(
            "n,,\u0001auth=Bearer " + forged + "\u0001\u0001",
            "n,,\u0001auth=\u0001\u0001")) { // no token: the discovery step
      try (var c = oauthClient()) {
        c.send(saslInitial("OAUTHBEARER", initial));
        var challenge = c.read();
        assertThat(challenge.type()).isEqualTo('R');
        assertThat(challenge.authCode()).as("AuthenticationSASLContinue").isEqualTo(11);
        assertThat(new String(challenge.body(), 4, challenge.body().length - 4))
            .contains("\"status\":\"invalid_token\"");
        c.send(org.cryoprotect.proxy.testing.WireClient.message('p', new byte[] {1}));
        var refusal = c.read();
        assertThat(refusal.type()).isEqualTo('E');
        assertThat(refusal.sqlState()).isEqualTo("28000");
      }
    }
    try (var c = oauthClient()) { // channel binding is not offered, so "p=" is malformed
      c.send(saslInitial("OAUTHBEARER", "p=tls-server-end-point,,\u0001auth=Bearer x\u0001\u0001"));
      var refusal = c.read();
      assertThat(refusal.type()).isEqualTo('E');
      assertThat(refusal.sqlState()).isEqualTo("08P01");
    }
  }

  @Test
  void anIdleSessionEndsWhenItsTokenExpires() throws Exception {
    String shortLived =
        token(
            privateKey,
            b ->
                b.withSubject(A)
                    .withClaim("role", "authenticated")
                    .withExpiresAt(Instant.now().plusSeconds(2)));
    try (Connection c = login(shortLived);
        Statement s = c.createStatement()) {
      assertThat(row(s, "SELECT auth.uid()::text")).containsExactly(A);
      Thread.sleep(3_000);
      assertThatThrownBy(() -> row(s, "SELECT 1"))
          .isInstanceOf(SQLException.class)
          .satisfies(
              e -> assertThat(((SQLException) e).getSQLState()).isIn("28000", "08003", "08006"));
    }
  }

  @Test
  void keysAddedToTheJwksAreAcceptedAndRemovedOnesRefusedWithoutARestart() throws Exception {
    Path jwks = otherDir.resolve("rotating.json");
    Files.copy(dir.resolve("jwks.json"), jwks);
    String config =
        Files.readString(proxy.configFile())
            .replace(dir.resolve("jwks.json").toString(), jwks.toString())
            .replaceAll("listen: \\{[^}]*\\}\\n", "")
            .replaceAll("admin: \\{[^}]*\\}\\n", "");
    String k1 = user(A);
    String k2 = token(otherKey, b -> b.withSubject(A).withClaim("role", "authenticated"));
    try (RunningProxy second = RunningProxy.start(config)) {
      second.connect("app", "authenticator", k1).close(); // k1's token is now in the cache
      assertThatThrownBy(() -> second.connect("app", "authenticator", k2).close())
          .isInstanceOf(SQLException.class);
      JsonNode both = Jwk.json().readTree(jwks.toFile());
      ((com.fasterxml.jackson.databind.node.ArrayNode) both.get("keys"))
          .add(Jwk.json().readTree(otherDir.resolve("jwks.json").toFile()).get("keys").get(0));
      Files.writeString(jwks, both.toPrettyString());
      org.awaitility.Awaitility.await()
          .atMost(Duration.ofSeconds(10))
          .ignoreExceptions()
          .until(
              () -> {
                second.connect("app", "authenticator", k2).close();
                return true;
              });
      Files.writeString(jwks, Files.readString(otherDir.resolve("jwks.json")));
      org.awaitility.Awaitility.await()
          .atMost(Duration.ofSeconds(10))
          .until(
              () -> {
                try {
                  second.connect("app", "authenticator", k1).close();
                  return false;
                } catch (SQLException e) {
                  return "28000".equals(e.getSQLState());
                }
              });
      second.connect("app", "authenticator", k2).close();
    }
  }
}
