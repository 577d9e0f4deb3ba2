package org.cryoprotect.proxy.frontend;

import static org.assertj.core.api.Assertions.assertThat;
import static org.cryoprotect.proxy.frontend.ClientState.ACTIVE;
import static org.cryoprotect.proxy.frontend.ClientState.CLOSED;
import static org.cryoprotect.proxy.frontend.ClientState.IDLE;
import static org.cryoprotect.proxy.frontend.ClientState.WAITING;

import java.util.EnumSet;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** Every move between client session states, allowed or not, against the written table. */
class ClientStateTest {
  static final Map<ClientState, Set<ClientState>> ALLOWED =
      Map.of(
          IDLE, EnumSet.of(WAITING, CLOSED),
          WAITING, EnumSet.of(IDLE, ACTIVE, CLOSED),
          ACTIVE, EnumSet.of(IDLE, CLOSED),
          CLOSED, EnumSet.noneOf(ClientState.class));

  @Test
  void everyMoveIsAllowedExactlyWhenTheTableSaysSo() {
    int checked = 0;
    for (ClientState from : ClientState.values()) {
      for (ClientState to : ClientState.values()) {
        assertThat(from.canMoveTo(to))
            .as("%s -> %s", from, to)
            .isEqualTo(ALLOWED.get(from).contains(to));
        checked++;
      }
    }
    assertThat(checked).isEqualTo(16);
  }

  @Test
  void labelsAreShowClientsWords() {
    assertThat(WAITING.label()).isEqualTo("waiting");
    assertThat(ACTIVE.label()).isEqualTo("active");
    assertThat(IDLE.label()).isEqualTo("idle");
  }
}
