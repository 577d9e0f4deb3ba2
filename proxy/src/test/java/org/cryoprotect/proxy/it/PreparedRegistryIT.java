package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.cryoprotect.proxy.testing.WireClient.Message;
import org.cryoprotect.proxy.testing.WireClient.Reply;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Named prepared statements under transaction pooling answer as PostgreSQL does: a name is taken
 * until it is closed (42P05 otherwise), and whether a statement parses depends on where and as whom
 * it is parsed (a relation may exist in one database, or in one role's schema, and not another), so
 * a statement one client's server accepted says nothing about another database's or role's. Every
 * scenario runs directly and through the proxy, and the two transcripts must be equal.
 */
@PgTest
class PreparedRegistryIT {
  static PgCluster pg;
  static RunningProxy proxy;

  @BeforeAll
  static void start(PgCluster cluster) throws Exception {
    pg = cluster;
    pg.createDatabase("a");
    pg.createDatabase("b");
    pg.primary().sql("a", "CREATE TABLE only_in_a (v int); INSERT INTO only_in_a VALUES (1)");
    pg.createUser("alice", "x");
    pg.createUser("bob", "x");
    pg.primary()
        .sql(
            "a",
            "CREATE SCHEMA alice AUTHORIZATION alice; CREATE TABLE alice.mine (v int);"
                + " INSERT INTO alice.mine VALUES (7); GRANT ALL ON alice.mine TO alice;"
                + " GRANT SELECT ON only_in_a TO alice, bob");
    int port = pg.primary().port();
    // No server user: each client's own role logs in, so pools are per (database, role).
    proxy =
        RunningProxy.start(
            "pool: { mode: transaction, size: 2, wait_timeout: 20s }\n"
                + "databases:\n"
                + "  a:\n    dbname: a\n    primary: { host: 127.0.0.1, port: "
                + port
                + " }\n"
                + "  b:\n    dbname: b\n    primary: { host: 127.0.0.1, port: "
                + port
                + " }\n");
  }

  @AfterAll
  static void stop() {
    if (proxy != null) {
      proxy.close();
    }
  }

  /**
   * Parse "s1", Sync; Parse "s1" again (another text, then the same text), Sync; Bind s1, Execute,
   * Sync. PostgreSQL answers the second Parse with 42P05 "prepared statement already exists" and s1
   * stays the first statement. Today the proxy answers ParseComplete and s1 becomes the second.
   */
  @Test
  void parsingATakenNameAgainIs42P05() throws Exception {
    List<String> direct = duplicateName(pg.primary().port());
    List<String> proxied = duplicateName(proxy.port());
    assertThat(direct.get(1)).isEqualTo("error 42P05 Z(I)");
    assertThat(proxied).isEqualTo(direct);
  }

  private static List<String> duplicateName(int port) throws Exception {
    List<String> out = new ArrayList<>();
    try (WireClient c = login(port, "postgres", "a")) {
      out.add(transcript(c.ask(WireClient.parse("s1", "SELECT 1"), WireClient.sync())));
      out.add(transcript(c.ask(WireClient.parse("s1", "SELECT 2"), WireClient.sync())));
      out.add(transcript(c.ask(WireClient.parse("s1", "SELECT 1"), WireClient.sync())));
      out.add(transcript(execute(c, "s1")));
      // In one batch: the error skips the rest up to Sync.
      out.add(
          transcript(
              c.ask(
                  WireClient.parse("s2", "SELECT 3"),
                  WireClient.parse("s2", "SELECT 4"),
                  WireClient.bind("", "s2"),
                  WireClient.execute("", 0),
                  WireClient.sync())));
      out.add(transcript(execute(c, "s2")));
      out.add(transcript(c.ask(WireClient.close('S', "s1"), WireClient.sync())));
      out.add(transcript(c.ask(WireClient.parse("s1", "SELECT 5"), WireClient.sync())));
      out.add(transcript(execute(c, "s1")));
    }
    return out;
  }

  /**
   * A statement on a table that exists only in database a, verified there by one client, then
   * parsed under the same name and text by a client of database b: PostgreSQL says 42P01. Today the
   * proxy answers ParseComplete from its proxy-wide registry without asking b's server.
   */
  @Test
  void aStatementVerifiedInOneDatabaseIsParsedAgainInAnother() throws Exception {
    String sql = "SELECT v FROM only_in_a";
    List<String> direct = acrossDatabases(pg.primary().port(), sql);
    List<String> proxied = acrossDatabases(proxy.port(), sql);
    assertThat(direct.get(2)).startsWith("error 42P01");
    assertThat(proxied).isEqualTo(direct);
  }

  private static List<String> acrossDatabases(int port, String sql) throws Exception {
    List<String> out = new ArrayList<>();
    try (WireClient inA = login(port, "postgres", "a");
        WireClient inB = login(port, "postgres", "b")) {
      out.add(transcript(inA.ask(WireClient.parse("q", sql), WireClient.sync())));
      out.add(transcript(execute(inA, "q")));
      out.add(transcript(inB.ask(WireClient.parse("q", sql), WireClient.sync())));
      out.add(transcript(execute(inB, "q")));
    }
    return out;
  }

  /**
   * The same across roles in one database: {@code mine} resolves through search_path's "$user" to
   * alice.mine for alice, and to nothing for bob (42P01).
   */
  @Test
  void aStatementVerifiedForOneRoleIsParsedAgainForAnother() throws Exception {
    List<String> direct = acrossRoles(pg.primary().port());
    List<String> proxied = acrossRoles(proxy.port());
    assertThat(direct.get(1)).isEqualTo("2 D[7] C(SELECT 1) Z(I)");
    assertThat(direct.get(2)).startsWith("error 42P01");
    assertThat(proxied).isEqualTo(direct);
  }

  private static List<String> acrossRoles(int port) throws Exception {
    List<String> out = new ArrayList<>();
    try (WireClient alice = login(port, "alice", "a");
        WireClient bob = login(port, "bob", "a")) {
      String sql = "SELECT v FROM mine";
      out.add(transcript(alice.ask(WireClient.parse("m", sql), WireClient.sync())));
      out.add(transcript(execute(alice, "m")));
      out.add(transcript(bob.ask(WireClient.parse("m", sql), WireClient.sync())));
      out.add(transcript(execute(bob, "m")));
    }
    return out;
  }

  static Reply execute(WireClient c, String statement) throws Exception {
    return c.ask(WireClient.bind("", statement), WireClient.execute("", 0), WireClient.sync());
  }

  /** The reply as its message types, rows, tags, SQLSTATEs and status: what both sides compare. */
  static String transcript(Reply r) {
    List<String> parts = new ArrayList<>();
    for (Message m : r.messages()) {
      parts.add(
          switch (m.type()) {
            case 'E' -> "error " + m.sqlState();
            case 'N' -> "notice " + m.sqlState();
            case 'S', 'K' -> null; // ParameterStatus and key data are not part of the answer
            default -> m.toString();
          });
    }
    parts.removeIf(p -> p == null);
    return String.join(" ", parts) + (r.closed() ? " <closed>" : "");
  }

  static WireClient login(int port, String user, String database) throws Exception {
    WireClient c = new WireClient(port);
    c.startup(user, database);
    Message error = c.readUntilReady();
    assertThat(error).as("login of %s to %s", user, database).isNull();
    return c;
  }
}
