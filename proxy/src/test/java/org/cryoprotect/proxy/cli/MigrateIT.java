package org.cryoprotect.proxy.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.HexFormat;
import java.util.List;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.PgTest;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * {@code cryoproxy migrate} against a real PostgreSQL: applies {@code sql/migrations}, is a no-op
 * the second time, refuses a changed migration (checksum) and bad input with exit 2, and leaves a
 * database whose {@code auth} functions believe only claims signed with the stored key.
 */
@PgTest
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class MigrateIT {
  static final String DB = "migrated";
  static PgCluster pg;
  static final byte[] KEY = new byte[32];

  @TempDir static Path dir;

  record Run(int exit, String out, String err) {}

  @BeforeAll
  static void prepare(PgCluster cluster) throws Exception {
    pg = cluster;
    pg.createDatabase(DB);
    for (int i = 0; i < KEY.length; i++) {
      KEY[i] = (byte) (i * 7 + 3);
    }
    Files.writeString(dir.resolve("claims.key"), HexFormat.of().formatHex(KEY) + "\n");
    Files.writeString(dir.resolve("short.key"), "abcd\n");
  }

  static Path config(int port) throws Exception {
    Path file = dir.resolve("cryoproxy-" + port + ".yaml");
    Files.writeString(
        file,
        "migrate: { user: "
            + PgCluster.SUPERUSER
            + ", password: "
            + PgCluster.SUPERUSER_PASSWORD
            + " }\n"
            + "databases:\n"
            + "  app: { dbname: "
            + DB
            + ", primary: { host: 127.0.0.1, port: "
            + port
            + " } }\n"
            + "  same: { dbname: "
            + DB
            + ", primary: { host: 127.0.0.1, port: "
            + port
            + " } }\n");
    return file;
  }

  static Run migrate(String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int exit =
        new CommandLine(
                new Migrate(
                    new PrintStream(out, true, StandardCharsets.UTF_8),
                    new PrintStream(err, true, StandardCharsets.UTF_8)))
            .execute(args);
    return new Run(
        exit, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  @Test
  @Order(1)
  void appliesEveryMigrationOnceAndStoresTheClaimsKey() throws Exception {
    Path config = config(pg.primary().port());
    Run first =
        migrate(
            "--config", config.toString(), "--claims-key", dir.resolve("claims.key").toString());
    System.out.print("[MigrateIT] first run:\n" + first.out() + first.err());
    assertThat(first.exit()).as(first.err()).isZero();
    assertThat(first.out())
        .contains(
            "applied 1 roles",
            "applied 2 auth",
            "applied 3 audit",
            "applied 4 cache invalidation",
            "applied 5 cryoprotect",
            "applied 6 view refresh",
            "applied 7 rls indexes",
            "claims key stored")
        .doesNotContain("database same"); // the same database on the same node: once
    Run second = migrate("--config", config.toString());
    assertThat(second.exit()).as(second.err()).isZero();
    assertThat(second.out()).contains("up to date at version 7").doesNotContain("applied");

    List<List<String>> roles =
        pg.primary()
            .sql(
                DB,
                "SELECT rolname, rolcanlogin, rolsuper OR rolbypassrls OR rolcreaterole OR"
                    + " rolcreatedb FROM pg_roles WHERE rolname IN ('authenticator', 'anon',"
                    + " 'authenticated', 'service_read', 'service_write') ORDER BY rolname");
    assertThat(roles)
        .containsExactly(
            List.of("anon", "t", "f"),
            List.of("authenticated", "t", "f"),
            List.of("authenticator", "t", "f"),
            List.of("service_read", "t", "f"),
            List.of("service_write", "t", "f"));
    assertThat(
            pg.primary()
                .sql(
                    DB,
                    "SELECT count(*) FROM pg_inherits"
                        + " WHERE inhparent = 'audit.service_role_log'::regclass"))
        .containsExactly(List.of("3"));
  }

  @Test
  @Order(2)
  void authFunctionsBelieveOnlySignedUnexpiredClaims() throws Exception {
    String sub = "4b9d2a3e-5f60-4c1e-9a7b-0c2d3e4f5a6b";
    long future = System.currentTimeMillis() / 1000 + 600;
    String claims =
        "{\"sub\":\""
            + sub
            + "\",\"role\":\"service_role\",\"scope\":\"cryo:read cryo:write\","
            + "\"exp\":"
            + future
            + "}";
    String expired = "{\"sub\":\"" + sub + "\",\"exp\":" + (future - 7200) + "}";
    String forged = "{\"sub\":\"00000000-0000-4000-8000-000000000000\",\"exp\":" + future + "}";
    pg.primary().sql(DB, "ALTER ROLE service_read PASSWORD 'read-secret'");
    // Logged in as the role itself, as CryoProxy logs in: a superuser could SET ROLE anywhere.
    try (Connection c = pg.primary().connect(DB, "service_read", "read-secret");
        Statement s = c.createStatement()) {
      set(s, claims, sign(claims));
      assertThat(one(s, "SELECT auth.uid()::text")).isEqualTo(sub);
      assertThat(one(s, "SELECT auth.role()")).isEqualTo("service_role");
      assertThat(one(s, "SELECT auth.has_scope('cryo:write')::text")).isEqualTo("true");
      assertThat(one(s, "SELECT auth.has_scope('cryo:admin')::text")).isEqualTo("false");
      // The client changes the claims but cannot sign them.
      s.execute("SELECT set_config('request.jwt.claims', '" + forged + "', false)");
      assertThat(one(s, "SELECT auth.uid()::text")).isNull();
      set(s, forged, sign(claims));
      assertThat(one(s, "SELECT auth.sub()")).isNull();
      set(s, expired, sign(expired));
      assertThat(one(s, "SELECT auth.jwt()::text")).isNull();
      set(s, "{\"sub\":\"not-a-uuid\"}", sign("{\"sub\":\"not-a-uuid\"}"));
      assertThat(one(s, "SELECT auth.sub()")).isEqualTo("not-a-uuid");
      assertThat(one(s, "SELECT auth.uid()::text")).isNull();
      // Nothing in auth or audit is readable by the role, nor the signing function callable.
      for (String sql :
          List.of(
              "SELECT key FROM auth.claims_key",
              "SELECT auth.claims_signature('{}')",
              "SELECT count(*) FROM audit.service_role_log")) {
        try {
          one(s, sql);
          throw new AssertionError(sql + " ran as service_read");
        } catch (SQLException e) {
          assertThat(e.getSQLState()).as(sql).isEqualTo("42501");
        }
      }
      // service_read cannot become service_write.
      try {
        s.execute("SET ROLE service_write");
        throw new AssertionError("service_read became service_write");
      } catch (SQLException e) {
        assertThat(e.getSQLState()).isEqualTo("42501");
      }
    }
  }

  /**
   * The usual case: the application's database already has its tables (here pgbench's). Every
   * migration applies, and the application's tables are untouched.
   */
  @Test
  @Order(5)
  void appliesToADatabaseThatAlreadyHasTables() throws Exception {
    pg.createDatabase("existing_app");
    pg.primary().sql("existing_app", "CREATE TABLE orders (id int); INSERT INTO orders VALUES (7)");
    Path config = dir.resolve("existing.yaml");
    Files.writeString(
        config,
        Files.readString(config(pg.primary().port()))
            .replace("dbname: " + DB, "dbname: existing_app"));
    Run first = migrate("--config", config.toString());
    System.out.print("[MigrateIT] a database with tables:\n" + first.out() + first.err());
    assertThat(first.exit()).as(first.err()).isZero();
    assertThat(first.out())
        .contains(
            "applied 1 roles",
            "applied 2 auth",
            "applied 3 audit",
            "applied 4 cache invalidation",
            "applied 5 cryoprotect",
            "applied 6 view refresh",
            "applied 7 rls indexes");
    assertThat(migrate("--config", config.toString()).out()).contains("up to date at version 7");
    assertThat(pg.primary().sql("existing_app", "SELECT id FROM orders"))
        .containsExactly(List.of("7"));
  }

  @Test
  @Order(3)
  void aChangedMigrationAndBadInputExitTwo() throws Exception {
    Path config = config(pg.primary().port());
    Run shortKey =
        migrate("--config", config.toString(), "--claims-key", dir.resolve("short.key").toString());
    assertThat(shortKey.exit()).isEqualTo(2);
    assertThat(shortKey.err()).contains("at least 32 random bytes");

    Run nowhere = migrate("--config", config(freePort()).toString());
    assertThat(nowhere.exit()).isEqualTo(2);
    assertThat(nowhere.err()).contains("database app");

    pg.primary()
        .sql(DB, "UPDATE flyway_schema_history SET checksum = checksum + 1 WHERE version = '2'");
    Run changed = migrate("--config", config.toString());
    System.out.print("[MigrateIT] after a checksum change: " + changed.err());
    assertThat(changed.exit()).isEqualTo(2);
    assertThat(changed.err()).containsIgnoringCase("checksum");
    pg.primary()
        .sql(DB, "UPDATE flyway_schema_history SET checksum = checksum - 1 WHERE version = '2'");
  }

  @Test
  @Order(4)
  void tokenRevokeListsTheJtiInEveryDatabase() throws Exception {
    Path config = config(pg.primary().port());
    for (String expected : List.of("revoked jti-42", "jti-42 already revoked")) {
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      int exit =
          new CommandLine(
                  new Token.Revoke(
                      new PrintStream(out, true, StandardCharsets.UTF_8),
                      new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8)))
              .execute("--config", config.toString(), "--reason", "leaked", "jti-42");
      assertThat(exit).isZero();
      assertThat(out.toString(StandardCharsets.UTF_8)).contains(expected);
    }
    assertThat(pg.primary().sql(DB, "SELECT jti, reason FROM auth.revoked_tokens"))
        .containsExactly(List.of("jti-42", "leaked"));
  }

  private static int freePort() throws Exception {
    try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  private static void set(Statement s, String claims, String sig) throws SQLException {
    s.execute(
        "SELECT set_config('request.jwt.claims', '"
            + claims
            + "', false), set_config('request.jwt.claims_sig', '"
            + sig
            + "', false)");
  }

  private static String one(Statement s, String sql) throws SQLException {
    try (ResultSet rs = s.executeQuery(sql)) {
      rs.next();
      return rs.getString(1);
    }
  }

  static String sign(String claims) throws Exception {
    Mac mac = Mac.getInstance("HmacSHA256");
    mac.init(new SecretKeySpec(KEY, "HmacSHA256"));
    return HexFormat.of().formatHex(mac.doFinal(claims.getBytes(StandardCharsets.UTF_8)));
  }
}
