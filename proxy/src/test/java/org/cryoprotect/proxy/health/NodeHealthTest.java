package org.cryoprotect.proxy.health;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.sql.SQLException;
import java.sql.SQLTransientConnectionException;
import java.time.Instant;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.health.NodeHealth.Role;
import org.junit.jupiter.api.Test;

class NodeHealthTest {
  private static final Endpoint NODE = new Endpoint("db", 5432);
  private static final Instant NOW = Instant.parse("2025-01-01T00:00:00Z");

  private static NodeHealth replica(long replay, long receive, Double age) {
    return NodeHealth.observed(
        "app", NODE, Role.REPLICA, true, replay, receive, age, NOW, 0, null, null);
  }

  @Test
  void lsnTextIsTheHighAndLowHalvesInHex() {
    assertThat(NodeHealth.parseLsn("0/3000148")).isEqualTo(0x3000148L);
    assertThat(NodeHealth.parseLsn("16/B374D848")).isEqualTo((0x16L << 32) | 0xB374D848L);
    assertThat(NodeHealth.parseLsn(null)).isZero();
    assertThatThrownBy(() -> NodeHealth.parseLsn("3000148"))
        .isInstanceOf(IllegalArgumentException.class);
  }

  @Test
  void aPositionJustPastAPageHeaderIsThePageBoundary() {
    assertThat(NodeHealth.recordEnd(0x3002018L)).isEqualTo(0x3002000L); // 24 past a page
    assertThat(NodeHealth.recordEnd(0x3002030L)).isEqualTo(0x3002030L); // a record may end here
    assertThat(NodeHealth.recordEnd(0x3002028L)).isEqualTo(0x3002028L); // 40: left alone
    assertThat(NodeHealth.recordEnd(0x3000148L)).isEqualTo(0x3000148L);
  }

  @Test
  void aReplicaThatReplayedAllItReceivedHasNoLagHoweverOldItsLastCommit() {
    NodeHealth idle = replica(1000, 1000, 3600.0);
    assertThat(idle.lagSeconds()).isZero();
    assertThat(idle.lagBytes()).isZero();
    assertThat(idle.usable()).isTrue();
    assertThat(idle.detail()).isEmpty();
  }

  @Test
  void aNewReplicaWithNoReplayedTransactionHasNoLag() {
    NodeHealth fresh = replica(1000, 1000, null);
    assertThat(fresh.lagSeconds()).isZero();
    assertThat(fresh.lagBytes()).isZero();
  }

  @Test
  void aReplicaBehindReportsBytesAndTheAgeOfItsLastReplayedCommit() {
    NodeHealth behind = replica(1000, 1500, 12.5);
    assertThat(behind.lagBytes()).isEqualTo(500);
    assertThat(behind.lagSeconds()).isEqualTo(12.5);
    // Without streaming there is no receive position: the age is all there is.
    NodeHealth archive = replica(1000, 0, 7.0);
    assertThat(archive.lagBytes()).isZero();
    assertThat(archive.lagSeconds()).isEqualTo(7.0);
  }

  @Test
  void aReplicaThatReplayedWhatItHadAtTheLastProbeAndNoCommitSinceLagsAtMostTheTimeSince() {
    Instant before = NOW.minusSeconds(2);
    Instant commit = NOW.minusSeconds(40); // the last commit, replayed long ago
    // An idle primary's background WAL arrived just before this probe: 344 bytes not replayed
    // yet. Everything received at the probe 2 s ago is replayed, and no commit since.
    NodeHealth idle = idle(5000, 5344, 40.0, 5000, commit, before);
    assertThat(idle.lagBytes()).isEqualTo(344);
    assertThat(idle.lagSeconds()).isEqualTo(2.0);
    // Replay stuck behind what it had 2 s ago: the commit's age stands.
    assertThat(idle(5000, 9000, 40.0, 6000, commit, before).lagSeconds()).isEqualTo(40.0);
    // Commits keep arriving 30 s late (slow transport from a busy primary): a newer commit was
    // replayed since the last probe, so its age stands, however quickly replay keeps up.
    NodeHealth late = idle(5000, 5344, 30.0, 5000, NOW.minusSeconds(32), before);
    assertThat(late.lagSeconds()).isEqualTo(30.0);
    // No previous probe: the age stands.
    assertThat(idle(5000, 5344, 40.0, 0, null, null).lagSeconds()).isEqualTo(40.0);
  }

  private static NodeHealth idle(
      long replay, long receive, double age, long receivedBefore, Instant commit, Instant before) {
    return NodeHealth.observed(
        "app", NODE, Role.REPLICA, true, replay, receive, age, NOW, receivedBefore, commit, before);
  }

  @Test
  void aPrimaryHasNoLagWhateverTheReplayColumnsSay() {
    NodeHealth primary =
        NodeHealth.observed("app", NODE, Role.PRIMARY, false, 5000, 10, 99.0, NOW, 0, null, null);
    assertThat(primary.lagBytes()).isZero();
    assertThat(primary.lagSeconds()).isZero();
    assertThat(primary.lsn()).isEqualTo(5000);
    assertThat(primary.usable()).isTrue();
  }

  @Test
  void aNodeInTheWrongRoleIsUpButNotUsable() {
    NodeHealth standbyAsPrimary =
        NodeHealth.observed("app", NODE, Role.PRIMARY, true, 1, 1, null, NOW, 0, null, null);
    assertThat(standbyAsPrimary.up()).isTrue();
    assertThat(standbyAsPrimary.usable()).isFalse();
    assertThat(standbyAsPrimary.detail()).contains("in recovery");
    NodeHealth promoted =
        NodeHealth.observed("app", NODE, Role.REPLICA, false, 1, 0, null, NOW, 0, null, null);
    assertThat(promoted.usable()).isFalse();
    assertThat(promoted.detail()).contains("not in recovery");
  }

  @Test
  void aDownNodeSaysWhyAndBeforeTheFirstProbeItIsDown() {
    NodeHealth down = NodeHealth.down("app", NODE, Role.REPLICA, "refused", "unreachable", NOW);
    assertThat(down.up()).isFalse();
    assertThat(down.detail()).isEqualTo("refused");
    NodeHealth unknown = NodeHealth.notProbed("app", NODE, Role.PRIMARY);
    assertThat(unknown.usable()).isFalse();
    assertThat(unknown.checkedAt()).isNull();
    assertThat(unknown.detail()).isEqualTo("not probed yet");
  }

  @Test
  void aPoolTimeoutIsDescribedByItsCause() {
    SQLException refused = new SQLException("Connection to db:5432 refused.");
    SQLException timeout =
        new SQLTransientConnectionException("pool - Connection is not available", "08001", refused);
    assertThat(NodeProbe.describe(timeout)).isEqualTo("Connection to db:5432 refused.");
    assertThat(NodeProbe.describe(new IllegalStateException())).isEqualTo("IllegalStateException");
  }

  @Test
  void probeFailuresAreNamedWithoutTheServersText() {
    assertThat(NodeProbe.reason(new java.sql.SQLException("FATAL: password for x", "28P01")))
        .isEqualTo("login refused");
    assertThat(
            NodeProbe.reason(
                new java.sql.SQLException(
                    "pool timed out", "08001", new java.sql.SQLException("refused 10.0.0.7"))))
        .isEqualTo("unreachable");
    assertThat(
            NodeProbe.reason(
                new java.sql.SQLException("the database system is starting up", "57P03")))
        .isEqualTo("starting up or shutting down");
    assertThat(NodeProbe.reason(new IllegalStateException("boom"))).isEqualTo("probe failed");
    assertThat(NodeProbe.reason(new java.sql.SQLException("x", "XX000")))
        .isEqualTo("probe failed (XX000)");
  }
}
