package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.cryoprotect.proxy.testing.WireClient.Message;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Client authentication against the users file and auth_query, and the matching server login: a
 * plain password, PostgreSQL's md5 hash, or SCRAM pass-through keys recovered from the client's own
 * proof. The server asks for a password from everyone (hba md5, which is SCRAM for SCRAM secrets).
 */
class AuthIT {
  static PgCluster pg;
  @TempDir static Path dir;
  static String aliceScram;
  static String carolMd5;

  @BeforeAll
  static void start() throws Exception {
    pg = PgCluster.builder().auth("md5").start();
    // The cluster stores md5 by default (auth "md5"); alice, bob and dave get SCRAM secrets.
    pg.primary()
        .sql(
            "SET password_encryption = 'scram-sha-256';"
                + " CREATE ROLE alice LOGIN PASSWORD 'alice-pw';"
                + " CREATE ROLE bob LOGIN PASSWORD 'bob-pw';"
                + " CREATE ROLE dave LOGIN PASSWORD 'dave-pw'");
    pg.primary()
        .sql("SET password_encryption = 'md5'; CREATE ROLE carol LOGIN PASSWORD 'carol-pw'");
    aliceScram =
        pg.primary().queryString("SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'");
    carolMd5 =
        pg.primary().queryString("SELECT rolpassword FROM pg_authid WHERE rolname = 'carol'");
    assertThat(aliceScram).startsWith("SCRAM-SHA-256$");
    assertThat(carolMd5).startsWith("md5");
    Files.writeString(
        dir.resolve("userlist.txt"),
        "; secrets as PgBouncer reads them\n"
            + "\"alice\" \""
            + aliceScram
            + "\"\n\"bob\" \"bob-pw\"\n\"carol\" \""
            + carolMd5
            + "\"\n");
  }

  @AfterAll
  static void stop() {
    pg.close();
  }

  private static RunningProxy proxy(String authType, String extra) throws Exception {
    return RunningProxy.start(
        RunningProxy.database("app", "postgres", "127.0.0.1", pg.primary().port())
            + "auth:\n  type: "
            + authType
            + "\n  users_file: "
            + dir.resolve("userlist.txt")
            + "\n"
            + extra);
  }

  private static String whoAmI(Connection c) throws SQLException {
    try (ResultSet rs = c.createStatement().executeQuery("SELECT current_user")) {
      rs.next();
      return rs.getString(1);
    }
  }

  private static void assertRefused(RunningProxy proxy, String user, String password) {
    assertThatThrownBy(() -> proxy.connect("app", user, password).close())
        .isInstanceOf(SQLException.class)
        .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("28P01"))
        .hasMessageContaining("password authentication failed for user \"" + user + "\"");
  }

  @Test
  void scramClientWithScramSecretPassesThroughToTheServer() throws Exception {
    try (RunningProxy proxy = proxy("scram-sha-256", "");
        Connection c = proxy.connect("app", "alice", "alice-pw")) {
      assertThat(whoAmI(c)).isEqualTo("alice");
    }
  }

  @Test
  void scramClientWithPlainSecret() throws Exception {
    try (RunningProxy proxy = proxy("scram-sha-256", "");
        Connection c = proxy.connect("app", "bob", "bob-pw")) {
      assertThat(whoAmI(c)).isEqualTo("bob");
    }
  }

  @Test
  void md5ClientWithPlainAndMd5Secrets() throws Exception {
    try (RunningProxy proxy = proxy("md5", "")) {
      try (Connection c = proxy.connect("app", "bob", "bob-pw")) {
        assertThat(whoAmI(c)).isEqualTo("bob");
      }
      try (Connection c = proxy.connect("app", "carol", "carol-pw")) {
        assertThat(whoAmI(c)).isEqualTo("carol");
      }
      // md5 configured, SCRAM secret stored: SCRAM is used, as PostgreSQL does.
      try (Connection c = proxy.connect("app", "alice", "alice-pw")) {
        assertThat(whoAmI(c)).isEqualTo("alice");
      }
    }
  }

  @Test
  void wrongPasswordsAndUnknownUsersGet28P01() throws Exception {
    try (RunningProxy scram = proxy("scram-sha-256", "");
        RunningProxy md5 = proxy("md5", "")) {
      assertRefused(scram, "alice", "wrong");
      assertRefused(scram, "bob", "wrong");
      assertRefused(scram, "nobody", "whatever");
      assertRefused(md5, "carol", "wrong");
      assertRefused(md5, "nobody", "whatever");
    }
  }

  @Test
  void authQueryFindsUsersMissingFromTheFile() throws Exception {
    try (RunningProxy proxy =
        proxy(
            "scram-sha-256",
            "  auth_query: SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1\n"
                + "  auth_user: postgres\n  auth_password: postgres\n")) {
      try (Connection c = proxy.connect("app", "dave", "dave-pw")) {
        assertThat(whoAmI(c)).isEqualTo("dave");
      }
      assertRefused(proxy, "dave", "nope");
      assertRefused(proxy, "nobody", "nope");
    }
  }

  @Test
  void configuredServerLoginIsUsedWhateverTheClientUser() throws Exception {
    try (RunningProxy proxy =
            RunningProxy.start(
                RunningProxy.database("app", "postgres", "127.0.0.1", pg.primary().port())
                    + "    user: bob\n    password: bob-pw\n");
        Connection c = proxy.connect("app", "anyone", null)) {
      assertThat(whoAmI(c)).isEqualTo("bob");
    }
  }

  @Test
  void serverRefusingTheProxyIsReported() throws Exception {
    try (RunningProxy proxy =
        RunningProxy.start(
            RunningProxy.database("app", "postgres", "127.0.0.1", pg.primary().port()))) {
      // trust at the proxy, password at the server, none known: a clear error, not a hang
      assertThatThrownBy(() -> proxy.connect("app", "dave", null).close())
          .isInstanceOf(SQLException.class)
          .hasMessageContaining("no password is known for user \"dave\"");
    }
  }

  /** Sends SASLInitialResponse for SCRAM-SHA-256 with {@code clientFirst}; returns the reply. */
  private static Message scramFirst(WireClient client, String user, String clientFirst)
      throws IOException {
    client.startup(user, "app");
    Message sasl = client.read();
    assertThat(sasl.type()).isEqualTo('R');
    assertThat(sasl.authCode()).isEqualTo(10);
    byte[] mechanism = "SCRAM-SHA-256\0".getBytes(StandardCharsets.US_ASCII);
    byte[] data = clientFirst.getBytes(StandardCharsets.US_ASCII);
    ByteBuffer body = ByteBuffer.allocate(mechanism.length + 4 + data.length);
    body.put(mechanism).putInt(data.length).put(data);
    client.send(WireClient.message('p', body.array()));
    return client.read();
  }

  @Test
  void malformedScramIsAProtocolViolation() throws Exception {
    try (RunningProxy proxy = proxy("scram-sha-256", "");
        WireClient client = new WireClient(proxy.port())) {
      Message reply = scramFirst(client, "alice", "this is not SCRAM");
      assertThat(reply.type()).isEqualTo('E');
      assertThat(reply.field('S')).isEqualTo("FATAL");
      assertThat(reply.sqlState()).isEqualTo("08P01");
      assertThat(client.closedByPeer()).isTrue();
    }
  }

  @Test
  void unknownUsersGetAStableMockSaltLikeKnownOnes() throws Exception {
    try (RunningProxy proxy = proxy("scram-sha-256", "")) {
      String first = serverFirstSalt(proxy, "nobody");
      assertThat(serverFirstSalt(proxy, "nobody")).isEqualTo(first);
      assertThat(serverFirstSalt(proxy, "someone-else")).isNotEqualTo(first);
      assertThat(serverFirstSalt(proxy, "alice")).isEqualTo(aliceScram.split("[:$]")[2]);
      // A plain-text secret's verifier is derived with a stable salt too: a fresh one per attempt
      // would tell users with plain passwords from unknown ones.
      String bob = serverFirstSalt(proxy, "bob");
      assertThat(serverFirstSalt(proxy, "bob")).isEqualTo(bob);
    }
  }

  @Test
  void theAdminConsoleDoesNotTellWhoItsAdminsAre() throws Exception {
    try (RunningProxy proxy = proxy("scram-sha-256", "  admin_users: alice\n")) {
      // bob's password is right, but bob is no admin: the same answer as a wrong password.
      for (String[] login : new String[][] {{"bob", "bob-pw"}, {"nobody", "x"}, {"alice", "no"}}) {
        assertThatThrownBy(() -> proxy.connect("cryoproxy", login[0], login[1]).close())
            .isInstanceOf(SQLException.class)
            .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("28P01"))
            .hasMessageContaining("password authentication failed for user \"" + login[0] + "\"");
      }
      try (Connection admin =
              proxy.connect("cryoproxy", "alice", "alice-pw", "preferQueryMode", "simple");
          ResultSet rs = admin.createStatement().executeQuery("SHOW VERSION")) {
        assertThat(rs.next()).isTrue();
      }
    }
  }

  @Test
  void aFailingAuthQueryTellsTheClientNothingOfWhy() throws Exception {
    try (RunningProxy proxy =
        proxy(
            "scram-sha-256",
            "  auth_query: SELECT usename, passwd FROM no_such_table WHERE usename = $1\n"
                + "  auth_user: postgres\n  auth_password: postgres\n")) {
      assertThatThrownBy(() -> proxy.connect("app", "dave", "dave-pw").close())
          .isInstanceOf(SQLException.class)
          .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("28000"))
          .hasMessageContaining("cannot look up user \"dave\"")
          .hasMessageNotContaining("no_such_table");
    }
  }

  private static String serverFirstSalt(RunningProxy proxy, String user) throws IOException {
    try (WireClient client = new WireClient(proxy.port())) {
      Message reply = scramFirst(client, user, "n,,n=,r=abcdefghijklmnop");
      assertThat(reply.authCode()).isEqualTo(11); // SASLContinue
      String serverFirst =
          new String(reply.body(), 4, reply.body().length - 4, StandardCharsets.US_ASCII);
      for (String attribute : serverFirst.split(",")) {
        if (attribute.startsWith("s=")) {
          return attribute.substring(2);
        }
      }
      throw new AssertionError("no salt in " + serverFirst);
    }
  }
}
