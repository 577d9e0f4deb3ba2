package org.cryoprotect.proxy;

import io.netty.channel.EventLoopGroup;
import io.netty.channel.IoHandlerFactory;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.ServerChannel;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollDatagramChannel;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.epoll.EpollServerSocketChannel;
import io.netty.channel.epoll.EpollSocketChannel;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.DatagramChannel;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioDatagramChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.channel.socket.nio.NioSocketChannel;
import io.netty.channel.uring.IoUring;
import io.netty.channel.uring.IoUringDatagramChannel;
import io.netty.channel.uring.IoUringIoHandler;
import io.netty.channel.uring.IoUringServerSocketChannel;
import io.netty.channel.uring.IoUringSocketChannel;
import java.util.Locale;
import java.util.concurrent.ThreadFactory;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The event loops' I/O, chosen with {@code -Dcryoproxy.transport}: {@code io_uring} (the default:
 * on this project's benchmarks it made under one system call per transaction where epoll makes four
 * or more, and used less CPU per transaction, bench/README.md), {@code epoll} or {@code nio}. One
 * that cannot load here (an old kernel, a container whose seccomp profile forbids io_uring, not
 * Linux x86_64) falls back to the next, io_uring to epoll to NIO, with a warning.
 */
public record Transport(
    String name,
    IoHandlerFactory ioHandlerFactory,
    Class<? extends ServerChannel> serverChannel,
    Class<? extends SocketChannel> socketChannel,
    Class<? extends DatagramChannel> datagramChannel) {

  private static final Logger log = LoggerFactory.getLogger(Transport.class);

  public static Transport best() {
    String wanted = System.getProperty("cryoproxy.transport", "io_uring").toLowerCase(Locale.ROOT);
    switch (wanted) {
      case "io_uring" -> {
        if (IoUring.isAvailable()) {
          return ioUring();
        }
        log.warn(
            "io_uring is not available here ({}): epoll instead", IoUring.unavailabilityCause());
        return epollOrNio();
      }
      case "epoll" -> {
        return epollOrNio();
      }
      case "nio" -> {
        return nio();
      }
      default ->
          throw new IllegalArgumentException(
              "-Dcryoproxy.transport must be io_uring, epoll or nio, not '" + wanted + "'");
    }
  }

  private static Transport epollOrNio() {
    if (Epoll.isAvailable()) {
      return epoll();
    }
    log.warn("epoll is not available here ({}): NIO instead", Epoll.unavailabilityCause());
    return nio();
  }

  private static Transport ioUring() {
    return new Transport(
        "io_uring",
        IoUringIoHandler.newFactory(),
        IoUringServerSocketChannel.class,
        IoUringSocketChannel.class,
        IoUringDatagramChannel.class);
  }

  private static Transport epoll() {
    return new Transport(
        "epoll",
        EpollIoHandler.newFactory(),
        EpollServerSocketChannel.class,
        EpollSocketChannel.class,
        EpollDatagramChannel.class);
  }

  private static Transport nio() {
    return new Transport(
        "nio",
        NioIoHandler.newFactory(),
        NioServerSocketChannel.class,
        NioSocketChannel.class,
        NioDatagramChannel.class);
  }

  public EventLoopGroup newGroup(int threads, ThreadFactory threadFactory) {
    return new MultiThreadIoEventLoopGroup(threads, threadFactory, ioHandlerFactory);
  }
}
