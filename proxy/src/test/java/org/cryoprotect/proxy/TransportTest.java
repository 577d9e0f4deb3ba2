package org.cryoprotect.proxy;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.netty.channel.epoll.Epoll;
import io.netty.channel.uring.IoUring;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** {@code -Dcryoproxy.transport}: io_uring by default, each one falling back to the next. */
class TransportTest {

  @AfterEach
  void clear() {
    System.clearProperty("cryoproxy.transport");
  }

  @Test
  void ioUringByDefaultWhereItLoadsElseEpollElseNio() {
    String expected = IoUring.isAvailable() ? "io_uring" : Epoll.isAvailable() ? "epoll" : "nio";
    assertThat(Transport.best().name()).isEqualTo(expected);
  }

  @Test
  void eachCanBeChosen() {
    System.setProperty("cryoproxy.transport", "epoll");
    assertThat(Transport.best().name()).isEqualTo(Epoll.isAvailable() ? "epoll" : "nio");
    System.setProperty("cryoproxy.transport", "NIO");
    assertThat(Transport.best().name()).isEqualTo("nio");
  }

  @Test
  void anUnknownOneIsRefusedByName() {
    System.setProperty("cryoproxy.transport", "kqueue");
    assertThatThrownBy(Transport::best)
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("kqueue");
  }
}
