package org.cryoprotect.proxy.testing;

import io.netty.bootstrap.Bootstrap;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.DatagramChannel;
import io.netty.channel.socket.nio.NioDatagramChannel;
import io.netty.handler.codec.dns.DatagramDnsQuery;
import io.netty.handler.codec.dns.DatagramDnsQueryDecoder;
import io.netty.handler.codec.dns.DatagramDnsResponse;
import io.netty.handler.codec.dns.DatagramDnsResponseEncoder;
import io.netty.handler.codec.dns.DefaultDnsQuestion;
import io.netty.handler.codec.dns.DefaultDnsRawRecord;
import io.netty.handler.codec.dns.DnsQuestion;
import io.netty.handler.codec.dns.DnsRecordType;
import io.netty.handler.codec.dns.DnsResponseCode;
import io.netty.handler.codec.dns.DnsSection;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

/**
 * A name server for tests: it answers A queries for the names it was given with 127.0.0.1, each
 * after that name's delay, AAAA queries for them with no address, and anything else with NXDOMAIN.
 * It counts the queries it received per name.
 */
public final class SlowDnsServer implements AutoCloseable {
  private final EventLoopGroup group =
      new MultiThreadIoEventLoopGroup(1, NioIoHandler.newFactory());
  private final Map<String, Duration> delays;
  private final Map<String, Integer> queries = new ConcurrentHashMap<>();
  private final Channel channel;

  /** {@code delays}: host name (no trailing dot) to how long its answer takes. */
  public SlowDnsServer(Map<String, Duration> delays) throws InterruptedException {
    this.delays = delays;
    this.channel =
        new Bootstrap()
            .group(group)
            .channel(NioDatagramChannel.class)
            .handler(
                new ChannelInitializer<DatagramChannel>() {
                  @Override
                  protected void initChannel(DatagramChannel ch) {
                    ch.pipeline()
                        .addLast(
                            new DatagramDnsQueryDecoder(),
                            new DatagramDnsResponseEncoder(),
                            new Answerer());
                  }
                })
            .bind("127.0.0.1", 0)
            .sync()
            .channel();
  }

  /** {@code host:port}, as {@code cryoproxy.dns.servers} takes it. */
  public String address() {
    InetSocketAddress local = (InetSocketAddress) channel.localAddress();
    return "127.0.0.1:" + local.getPort();
  }

  public int queries(String name) {
    return queries.getOrDefault(name, 0);
  }

  @Override
  public void close() {
    channel.close().syncUninterruptibly();
    group.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
  }

  private final class Answerer extends SimpleChannelInboundHandler<DatagramDnsQuery> {
    @Override
    protected void channelRead0(ChannelHandlerContext ctx, DatagramDnsQuery query) {
      DnsQuestion question = query.recordAt(DnsSection.QUESTION);
      String name =
          question.name().endsWith(".")
              ? question.name().substring(0, question.name().length() - 1)
              : question.name();
      queries.merge(name, 1, Integer::sum);
      DatagramDnsResponse response =
          new DatagramDnsResponse(query.recipient(), query.sender(), query.id());
      response.addRecord(
          DnsSection.QUESTION, new DefaultDnsQuestion(question.name(), question.type()));
      Duration delay = delays.get(name);
      if (delay == null) {
        response.setCode(DnsResponseCode.NXDOMAIN);
        ctx.writeAndFlush(response);
        return;
      }
      if (question.type() == DnsRecordType.A) {
        response.addRecord(
            DnsSection.ANSWER,
            new DefaultDnsRawRecord(
                question.name(),
                DnsRecordType.A,
                60,
                Unpooled.wrappedBuffer(new byte[] {127, 0, 0, 1})));
      }
      ctx.executor()
          .schedule(() -> ctx.writeAndFlush(response), delay.toMillis(), TimeUnit.MILLISECONDS);
    }
  }
}
