package org.cryoprotect.proxy.testing;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.embedded.PgNode;
import org.cryoprotect.embedded.TestCerts;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Proves the harness itself: run once with the bundled PostgreSQL and once with PG_BIN set. */
@PgTest(replicas = 1, tls = true, auth = "scram-sha-256")
class PgHarnessIT {

  @Test
  void primaryAnswersAndReplicaIsInRecovery(PgCluster pg) throws SQLException {
    try (Connection c = pg.primary().connect();
        Statement st = c.createStatement();
        ResultSet rs = st.executeQuery("SELECT 1 + 1, pg_is_in_recovery()")) {
      assertThat(rs.next()).isTrue();
      assertThat(rs.getInt(1)).isEqualTo(2);
      assertThat(rs.getBoolean(2)).isFalse();
    }
    assertThat(pg.replica(0).queryString("SELECT pg_is_in_recovery()")).isEqualTo("t");
    assertThat(pg.serverVersionNum()).isGreaterThanOrEqualTo(150000);
    assertThat(pg.primary().queryString("SHOW max_connections")).isEqualTo("300");
    System.out.printf(
        "PgHarnessIT: PostgreSQL %d from %s, primary %s, replica %s%n",
        pg.serverVersionNum(), pg.binDir(), pg.primary(), pg.replica(0));
  }

  @Test
  void replicaStreamsRowsInsertedOnPrimary(PgCluster pg) {
    assertThat(pg.sql("SELECT application_name, state FROM pg_stat_replication"))
        .containsExactly(List.of("replica-0", "streaming"));
    pg.sql("CREATE TABLE streamed (id int PRIMARY KEY, note text)");
    pg.sql("INSERT INTO streamed VALUES (1, 'hello replica')");

    await()
        .atMost(Duration.ofSeconds(30))
        .ignoreExceptions()
        .untilAsserted(
            () ->
                assertThat(pg.replica(0).sql("SELECT note FROM streamed WHERE id = 1"))
                    .containsExactly(List.of("hello replica")));
  }

  @Test
  void tlsVerifyFullTrustsTheClusterCa(PgCluster pg) throws SQLException {
    Properties props = pg.sslProperties("verify-full");
    props.setProperty("user", PgCluster.SUPERUSER);
    props.setProperty("password", PgCluster.SUPERUSER_PASSWORD);
    for (PgNode node : pg.nodes()) {
      try (Connection c = node.connect("postgres", props);
          Statement st = c.createStatement();
          ResultSet rs =
              st.executeQuery(
                  "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")) {
        assertThat(rs.next()).isTrue();
        assertThat(rs.getBoolean(1)).as("ssl on %s", node).isTrue();
        assertThat(rs.getString(2)).startsWith("TLS");
      }
    }
  }

  @Test
  void tlsVerifyFullRejectsAnotherCa(PgCluster pg, @TempDir Path dir) {
    TestCerts stranger = TestCerts.generate(dir);
    Properties props = pg.sslProperties("verify-full");
    props.setProperty("sslrootcert", stranger.caCert().toString());
    props.setProperty("user", PgCluster.SUPERUSER);
    props.setProperty("password", PgCluster.SUPERUSER_PASSWORD);
    assertThatThrownBy(() -> pg.primary().connect("postgres", props).close())
        .isInstanceOf(SQLException.class);
  }

  @Test
  void scramUserLogsInWithItsPasswordOnly(PgCluster pg) throws SQLException {
    pg.createUser("alice", "s3cret'quote");
    pg.createDatabase("alicedb", "alice");
    assertThat(
            pg.primary().queryString("SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'"))
        .startsWith("SCRAM-SHA-256$");
    try (Connection c = pg.primary().connect("alicedb", "alice", "s3cret'quote");
        Statement st = c.createStatement();
        ResultSet rs = st.executeQuery("SELECT current_user, current_database()")) {
      assertThat(rs.next()).isTrue();
      assertThat(rs.getString(1)).isEqualTo("alice");
      assertThat(rs.getString(2)).isEqualTo("alicedb");
    }
    assertThatThrownBy(() -> pg.primary().connect("alicedb", "alice", "wrong").close())
        .isInstanceOfSatisfying(
            SQLException.class, e -> assertThat(e.getSQLState()).isEqualTo("28P01"));
  }

  @Test
  void killedPrimaryRecoversAndReplicaReconnects(PgCluster pg) {
    pg.sql("CREATE TABLE survives_kill (id int)");
    pg.sql("INSERT INTO survives_kill VALUES (42)");
    // synchronous_commit=off: only WAL already flushed survives SIGKILL, and a replica has
    // replayed only flushed WAL.
    pg.awaitReplication();
    long oldPid = pg.primary().pid().orElseThrow();

    pg.primary().kill();
    assertThat(pg.primary().isRunning()).isFalse();
    assertThatThrownBy(() -> pg.primary().sql("SELECT 1"))
        .isInstanceOf(IllegalStateException.class);

    pg.primary().start();
    assertThat(pg.primary().pid().orElseThrow()).isNotEqualTo(oldPid);
    assertThat(pg.primary().queryString("SELECT id FROM survives_kill")).isEqualTo("42");
    await()
        .atMost(Duration.ofSeconds(60))
        .ignoreExceptions()
        .until(
            () -> "1".equals(pg.primary().queryString("SELECT count(*) FROM pg_stat_replication")));
  }

  @Test
  void pausedReplicaHangsUntilResumed(PgCluster pg) throws SQLException {
    PgNode replica = pg.replica(0);
    replica.pause();
    try {
      Properties props = new Properties();
      props.setProperty("user", PgCluster.SUPERUSER);
      props.setProperty("password", PgCluster.SUPERUSER_PASSWORD);
      props.setProperty("loginTimeout", "2");
      assertThatThrownBy(() -> replica.connect("postgres", props).close())
          .isInstanceOf(SQLException.class);
    } finally {
      replica.resume();
    }
    assertThat(replica.queryString("SELECT 1")).isEqualTo("1");
  }

  @Test
  void stopAndStartKeepThePort(PgCluster pg) {
    PgNode replica = pg.replica(0);
    int port = replica.port();
    replica.stop();
    assertThat(replica.isRunning()).isFalse();
    replica.start();
    assertThat(replica.port()).isEqualTo(port);
    assertThat(replica.queryString("SELECT pg_is_in_recovery()")).isEqualTo("t");
  }

  @Test
  void plainClusterWithMd5AuthAndCleanup() throws SQLException {
    Path root;
    try (PgCluster pg = PgCluster.builder().auth("md5").setting("work_mem", "8MB").start()) {
      root = pg.rootDir();
      assertThat(pg.replicas()).isEmpty();
      assertThat(pg.certs()).isNull();
      assertThat(pg.primary().queryString("SHOW work_mem")).isEqualTo("8MB");
      pg.createUser("bob", "hunter2");
      assertThat(
              pg.primary().queryString("SELECT rolpassword FROM pg_authid WHERE rolname = 'bob'"))
          .startsWith("md5");
      try (Connection c = pg.primary().connect("postgres", "bob", "hunter2")) {
        assertThat(c.isValid(5)).isTrue();
      }
      assertThat(pg.primary().serverLog()).contains("database system is ready");
    }
    assertThat(Files.exists(root)).isFalse();
  }
}
