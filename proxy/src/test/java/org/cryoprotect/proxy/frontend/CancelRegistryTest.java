package org.cryoprotect.proxy.frontend;

import static org.assertj.core.api.Assertions.assertThat;

import io.netty.channel.embedded.EmbeddedChannel;
import java.util.HashSet;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** Cancel keys come from a buffer refilled 4 KiB at a time: across refills they stay sound. */
class CancelRegistryTest {

  @Test
  void keysStayPositiveDistinctAndRandomAcrossRefills() {
    CancelRegistry registry = new CancelRegistry();
    EmbeddedChannel channel = new EmbeddedChannel();
    Set<Integer> pids = new HashSet<>();
    Set<Integer> secrets = new HashSet<>();
    int clients = 5_000; // about ten refills of the 512-key buffer
    for (int i = 0; i < clients; i++) {
      ClientConnection client = registry.newClient(channel);
      assertThat(client.keyData().processId()).isPositive();
      pids.add(client.keyData().processId());
      secrets.add(client.keyData().secretKey());
    }
    assertThat(pids).hasSize(clients); // registered keys never collide
    assertThat(registry.size()).isEqualTo(clients);
    // 5,000 random 32-bit secrets: a repeat is a one-in-several-hundred event, a refill that
    // replayed bytes would repeat 512 at once
    assertThat(secrets.size()).isGreaterThan(clients - 5);
    channel.finishAndReleaseAll();
  }
}
