package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.List;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Session state made in ways no lexical scan of the client's SQL sees (dynamic SQL in a DO block,
 * SELECT ... INTO TEMP) must neither reach the next client of the same server connection nor be
 * lost for the client that made it. One server connection (pool size 1), so every client shares it;
 * {@code pg_backend_pid()} proves it is the same one.
 */
@PgTest
class SessionStateLeakIT {
  static PgCluster pg;
  static RunningProxy proxy;

  @BeforeAll
  static void start(PgCluster cluster) throws Exception {
    pg = cluster;
    pg.createDatabase("app");
    pg.primary()
        .sql(
            "app",
            "CREATE SCHEMA s1; CREATE TABLE public.t (v text); CREATE TABLE s1.t (v text);"
                + " INSERT INTO public.t VALUES ('public'); INSERT INTO s1.t VALUES ('s1')");
    // A short wait: a client kept from a pinned connection hears 53300 soon.
    proxy =
        RunningProxy.start(
            "pool: { mode: transaction, size: 1, wait_timeout: 2s, server_check_delay: 0s }\n"
                + RunningProxy.database("app", "app", "127.0.0.1", pg.primary().port()));
  }

  @AfterAll
  static void stop() {
    if (proxy != null) {
      proxy.close();
    }
  }

  static Connection connect() throws SQLException {
    return proxy.connect("app", "postgres", null);
  }

  static String one(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement();
        ResultSet rs = s.executeQuery(sql)) {
      assertThat(rs.next()).isTrue();
      return rs.getString(1);
    }
  }

  /**
   * {@code DO $$ begin execute 'set search_path = s1'; end $$}: the server connection's search_path
   * changed, and nothing in the statement's text says so. The next client of that connection must
   * see the default search_path (and {@code t} from public), the first client keeps s1. PostgreSQL
   * 18 reports search_path in a ParameterStatus, which the proxy follows, so this passes there
   * today; before 18 (the CI's PostgreSQL 15 pass) the next client resolves {@code t} in s1.
   */
  @Test
  void searchPathSetByDynamicSqlStaysWithItsClient() throws Exception {
    try (Connection a = connect();
        Connection b = connect()) {
      String pid = one(a, "SELECT pg_backend_pid()");
      try (Statement s = a.createStatement()) {
        s.execute("DO $$ BEGIN EXECUTE 'SET search_path = s1'; END $$");
      }
      assertThat(one(b, "SELECT pg_backend_pid()")).as("one server connection").isEqualTo(pid);
      assertThat(one(b, "SHOW search_path")).as("next client").isEqualTo("\"$user\", public");
      assertThat(one(b, "SELECT v FROM t")).as("next client").isEqualTo("public");
      assertThat(one(a, "SHOW search_path")).as("the client that set it").isEqualTo("s1");
      assertThat(one(a, "SELECT v FROM t")).as("the client that set it").isEqualTo("s1");
      assertThat(one(b, "SELECT v FROM t")).as("next client, again").isEqualTo("public");
      assertThat(one(b, "SELECT pg_backend_pid()")).isEqualTo(pid);
    }
  }

  /**
   * The same with settings no PostgreSQL version reports (work_mem, statement_timeout): only
   * looking at the server's settings after such a statement can tell. Today the next client gets
   * the first client's values, and the first client loses them.
   */
  @Test
  void unreportedSettingsSetByDynamicSqlStayWithTheirClient() throws Exception {
    try (Connection a = connect();
        Connection b = connect()) {
      String pid = one(a, "SELECT pg_backend_pid()");
      try (Statement s = a.createStatement()) {
        s.execute(
            "DO $$ BEGIN EXECUTE 'SET work_mem = ''7MB'''; "
                + "EXECUTE 'SET statement_timeout = 4321'; END $$");
      }
      assertThat(one(b, "SELECT pg_backend_pid()")).as("one server connection").isEqualTo(pid);
      assertThat(one(b, "SHOW work_mem")).as("next client").isEqualTo("4MB");
      assertThat(one(b, "SHOW statement_timeout")).as("next client").isEqualTo("0");
      assertThat(one(a, "SHOW work_mem")).as("the client that set it").isEqualTo("7MB");
      assertThat(one(a, "SHOW statement_timeout")).as("the client that set it").isEqualTo("4321ms");
    }
  }

  /**
   * {@code SELECT 1 AS a INTO TEMP tt} creates a temporary table without the words CREATE TEMP. The
   * client that made it must keep seeing it (its server connection is pinned to it); no other
   * client may see it, neither while the first is connected (it waits, 53300, or uses another
   * connection: never one with tt) nor after it left (the connection is reset). Today the proxy
   * releases the connection after the statement and the next client finds {@code tt}.
   */
  @Test
  void temporaryTableFromSelectIntoStaysWithItsClient() throws Exception {
    String tt = "SELECT to_regclass('pg_temp.tt') IS NOT NULL";
    String pid;
    try (Connection b = connect()) {
      try (Connection a = connect()) {
        pid = one(a, "SELECT pg_backend_pid()");
        try (Statement s = a.createStatement()) {
          s.execute("SELECT 1 AS a INTO TEMP tt");
        }
        String seenByB;
        try {
          seenByB =
              one(b, tt)
                  + " on "
                  + (one(b, "SELECT pg_backend_pid()").equals(pid) ? "same" : "other");
        } catch (SQLException e) {
          seenByB = "error " + e.getSQLState();
        }
        assertThat(seenByB)
            .as("another client while the first is connected")
            .isIn("f on same", "f on other", "error 53300");
        assertThat(one(a, "SELECT count(*) FROM tt")).as("the client that made it").isEqualTo("1");
        assertThat(one(a, "SELECT pg_backend_pid()")).isEqualTo(pid);
      }
      // a left: its connection must come back clean.
      assertThat(one(b, "SELECT pg_backend_pid()")).as("one server connection").isEqualTo(pid);
      assertThat(one(b, tt)).as("next client after the first left").isEqualTo("f");
    }
  }

  /**
   * A simple Query sent between an Execute and its Sync (a client mixing the protocols; the fuzz
   * clients of ProtocolFuzzIT do) leaves a PostgreSQL 17+ backend, once the Sync arrives, with an
   * implicit transaction block open and no transaction command: its next statement fails with
   * {@code XX000 StartTransactionCommand: unexpected state STARTED}. Directly, only the client that
   * did it suffers; through the proxy that server connection must not reach the next client (a
   * pgJDBC client, whose settings the proxy applies first, got that XX000 as a FATAL before).
   */
  @Test
  void queryInsideAnUnsyncedBatchDoesNotHurtTheNextClient() throws Exception {
    String direct = mixProtocols(pg.primary().port());
    String proxied = mixProtocols(proxy.port());
    // PostgreSQL before 17 has no implicit block made by pipelining, nor this failure.
    String afterSync = pg.serverVersionNum() >= 170000 ? "XX000" : "ok";
    assertThat(direct).as("directly").isEqualTo("12DCTDCZZ then " + afterSync);
    // Through the proxy its next statement runs on a sound server connection.
    assertThat(proxied).as("the mixing client through the proxy").isEqualTo("12DCTDCZZ then ok");
    for (int i = 0; i < 2; i++) {
      try (Connection next = connect()) {
        assertThat(one(next, "SELECT 41 + 1")).as("the next client").isEqualTo("42");
      }
      try (WireClient next = new WireClient(proxy.port())) {
        next.startup("postgres", "app");
        assertThat(next.readReply()).extracting(m -> m.type()).doesNotContain('E');
        var r = next.ask("SELECT 41 + 1");
        assertThat(r.errors()).as("the next raw client: %s", r).isEmpty();
        assertThat(r.rows()).containsExactly(List.of("42"));
      }
    }
  }

  /** Parse, Bind, Execute, Query, Sync, then one more Query: what the client saw, in short. */
  static String mixProtocols(int port) throws Exception {
    try (WireClient c = new WireClient(port)) {
      c.startup("postgres", "app");
      c.readReply();
      c.send(
          concat(
              WireClient.parse("", "SELECT 1"),
              WireClient.bind("", ""),
              WireClient.execute("", 0),
              WireClient.query("SELECT 2")));
      StringBuilder seen = new StringBuilder();
      for (var m : c.readReply()) {
        seen.append(m.type());
      }
      c.send(WireClient.sync());
      for (var m : c.readReply()) {
        seen.append(m.type());
      }
      var after = c.ask("SELECT 3");
      seen.append(" then ").append(after.error() == null ? "ok" : after.error().sqlState());
      return seen.toString();
    }
  }

  static byte[] concat(byte[]... parts) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    for (byte[] p : parts) {
      out.writeBytes(p);
    }
    return out.toByteArray();
  }
}
