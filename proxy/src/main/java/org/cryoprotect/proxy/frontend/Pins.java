package org.cryoprotect.proxy.frontend;

import java.util.EnumSet;
import java.util.Locale;
import java.util.Set;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.sql.SqlScan.Pin;

/**
 * What ties a client to its server connection in transaction mode, by reason (DESIGN §3): state on
 * the server that cannot move to another connection. Two sources keep it true: the lexical scan of
 * each statement the client sends ({@link #noted}) and the state probe after opaque units ({@link
 * #probed}), which is the truth about everything the server ran before it. Statements the client
 * sent after the probe (it may pipeline while it holds the connection) run after it on the server,
 * so the probe cannot know of them: their pins and releases stand until the next probe.
 */
final class Pins {
  private final ProxyMetrics metrics;
  private final EnumSet<Pin> held = EnumSet.noneOf(Pin.class);
  private final EnumSet<Pin> pinnedSinceProbe = EnumSet.noneOf(Pin.class);
  private final EnumSet<Pin> releasedSinceProbe = EnumSet.noneOf(Pin.class);

  Pins(ProxyMetrics metrics) {
    this.metrics = metrics;
  }

  boolean isEmpty() {
    return held.isEmpty();
  }

  /** A statement the client sent pins and releases these; returns the pins that are new. */
  Set<Pin> noted(Set<Pin> pins, Set<Pin> releases) {
    held.removeAll(releases);
    releasedSinceProbe.addAll(releases);
    pinnedSinceProbe.removeAll(releases);
    pinnedSinceProbe.addAll(pins);
    releasedSinceProbe.removeAll(pins);
    return add(pins);
  }

  /** The state probe was sent: what the client sends from now on runs after it. */
  void probeSent() {
    pinnedSinceProbe.clear();
    releasedSinceProbe.clear();
  }

  /** The probe found {@code captured}; returns the pins that are new. */
  Set<Pin> probed(Set<Pin> captured) {
    EnumSet<Pin> now = EnumSet.copyOf(pinnedSinceProbe);
    for (Pin pin : captured) {
      if (!releasedSinceProbe.contains(pin)) {
        now.add(pin);
      }
    }
    Set<Pin> added = add(now);
    held.retainAll(now);
    return added;
  }

  void remove(Pin pin) {
    held.remove(pin);
  }

  /** The state went away whole: DISCARD ALL, a reset, or the server connection died. */
  void clear() {
    held.clear();
  }

  private Set<Pin> add(Set<Pin> pins) {
    EnumSet<Pin> added = EnumSet.noneOf(Pin.class);
    for (Pin pin : pins) {
      if (held.add(pin)) {
        added.add(pin);
        metrics.pin(pin.name().toLowerCase(Locale.ROOT));
      }
    }
    return added;
  }
}
