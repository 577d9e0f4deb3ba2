package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.embedded.TestCerts;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * TLS on both legs with full verification: pgJDBC verifies the proxy's certificate and host name,
 * the proxy verifies PostgreSQL's, and the server confirms the proxy's session is encrypted.
 */
class TlsIT {
  static TestCerts certs;
  static PgCluster pg;
  static RunningProxy proxy;

  @BeforeAll
  static void start() throws Exception {
    certs = TestCerts.generate();
    pg = PgCluster.builder().tls(certs).start();
    proxy =
        RunningProxy.start(
            "databases:\n  app:\n    dbname: postgres\n    primary: { host: localhost, port: "
                + pg.primary().port()
                + " }\n"
                + "tls:\n"
                + "  client: { mode: require, cert_file: "
                + certs.serverCert()
                + ", key_file: "
                + certs.serverKey()
                + " }\n"
                + "  server: { mode: verify-full, ca_file: "
                + certs.caCert()
                + " }\n");
  }

  @AfterAll
  static void stop() {
    if (proxy != null) {
      proxy.close();
    }
    if (pg != null) {
      pg.close();
    }
  }

  private static Connection connect(String sslmode, String host) throws SQLException {
    return java.sql.DriverManager.getConnection(
        "jdbc:postgresql://"
            + host
            + ":"
            + proxy.port()
            + "/app?user=postgres&sslmode="
            + sslmode
            + "&sslrootcert="
            + certs.caCert()
            + "&connectTimeout=10");
  }

  @Test
  void verifyFullOnBothLegs() throws SQLException {
    try (Connection c = connect("verify-full", "localhost");
        ResultSet rs =
            c.createStatement()
                .executeQuery(
                    "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")) {
      assertThat(rs.next()).isTrue();
      assertThat(rs.getBoolean("ssl")).as("proxy to server is encrypted").isTrue();
      assertThat(rs.getString("version")).isEqualTo("TLSv1.3");
    }
  }

  @Test
  void hostNameMismatchIsRejectedByTheClient() {
    // The certificate names localhost and 127.0.0.1 only.
    assertThatThrownBy(() -> connect("verify-full", "127.0.0.2").close())
        .isInstanceOf(SQLException.class);
  }

  @Test
  void plaintextClientIsRefusedWhenTlsIsRequired() throws Exception {
    try (WireClient client = new WireClient(proxy.port())) {
      client.startup("postgres", "app");
      WireClient.Message error = client.readError();
      assertThat(error.sqlState()).isEqualTo("28000");
      assertThat(error.field('M')).contains("TLS is required");
      assertThat(client.closedByPeer()).isTrue();
    }
  }

  @Test
  void proxyRefusesServerWithUntrustedCertificate() throws Exception {
    TestCerts other = TestCerts.generate();
    try (RunningProxy strict =
        RunningProxy.start(
            RunningProxy.database("app", "postgres", "localhost", pg.primary().port())
                + "tls:\n  server: { mode: verify-full, ca_file: "
                + other.caCert()
                + " }\n")) {
      assertThatThrownBy(() -> strict.connect("app", "postgres", null).close())
          .isInstanceOf(SQLException.class)
          .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("08001"))
          .hasMessageContaining("TLS handshake");
    }
  }
}
