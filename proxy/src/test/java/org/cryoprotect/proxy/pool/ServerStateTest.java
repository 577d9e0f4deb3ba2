package org.cryoprotect.proxy.pool;

import static org.assertj.core.api.Assertions.assertThat;
import static org.cryoprotect.proxy.pool.ServerState.ACTIVE;
import static org.cryoprotect.proxy.pool.ServerState.BEING_CANCELED;
import static org.cryoprotect.proxy.pool.ServerState.CLOSED;
import static org.cryoprotect.proxy.pool.ServerState.IDLE;
import static org.cryoprotect.proxy.pool.ServerState.TESTED;

import java.util.EnumSet;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** Every move between server connection states, allowed or not, against the written table. */
class ServerStateTest {
  /** From each state, the states a connection may move to; every other move is a bug. */
  static final Map<ServerState, Set<ServerState>> ALLOWED =
      Map.of(
          ACTIVE, EnumSet.of(ACTIVE, TESTED, BEING_CANCELED, IDLE, CLOSED),
          TESTED, EnumSet.of(ACTIVE, BEING_CANCELED, IDLE, CLOSED),
          BEING_CANCELED, EnumSet.of(ACTIVE, IDLE, CLOSED),
          IDLE, EnumSet.of(ACTIVE, CLOSED),
          CLOSED, EnumSet.noneOf(ServerState.class));

  @Test
  void everyMoveIsAllowedExactlyWhenTheTableSaysSo() {
    int checked = 0;
    for (ServerState from : ServerState.values()) {
      for (ServerState to : ServerState.values()) {
        assertThat(from.canMoveTo(to))
            .as("%s -> %s", from, to)
            .isEqualTo(ALLOWED.get(from).contains(to));
        checked++;
      }
    }
    assertThat(checked).isEqualTo(25);
  }

  @Test
  void anIdleConnectionIsLentOnlyThroughActive() {
    // Nothing reaches a client without passing ACTIVE; nothing enters the idle list from CLOSED.
    for (ServerState from : ServerState.values()) {
      assertThat(from.canMoveTo(TESTED)).as("%s -> TESTED", from).isEqualTo(from == ACTIVE);
      assertThat(from.canMoveTo(IDLE))
          .as("%s -> IDLE", from)
          .isEqualTo(from != IDLE && from != CLOSED);
    }
  }

  @Test
  void labelsAreShowServersWords() {
    assertThat(BEING_CANCELED.label()).isEqualTo("being_canceled");
    assertThat(TESTED.label()).isEqualTo("tested");
  }
}
