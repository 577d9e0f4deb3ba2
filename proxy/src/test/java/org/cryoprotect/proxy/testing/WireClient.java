package org.cryoprotect.proxy.testing;

import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A deliberately dumb blocking protocol client for tests that must send what no driver would: raw
 * bytes, broken lengths, unknown types. Reads whole messages back for assertions.
 */
public final class WireClient implements AutoCloseable {
  /** One backend message; {@code type} is 0 for the single-byte encryption answers. */
  public record Message(char type, byte[] body) {
    /** For 'E'/'N': the value of one field, e.g. 'C' for the SQLSTATE. */
    public String field(char code) {
      int i = 0;
      while (i < body.length && body[i] != 0) {
        char c = (char) body[i];
        int end = i + 1;
        while (body[end] != 0) {
          end++;
        }
        if (c == code) {
          return new String(body, i + 1, end - i - 1, StandardCharsets.UTF_8);
        }
        i = end + 1;
      }
      return null;
    }

    public String sqlState() {
      return field('C');
    }

    public int authCode() {
      return ByteBuffer.wrap(body).getInt();
    }
  }

  private final Socket socket;
  private final DataInputStream in;
  private final OutputStream out;

  public WireClient(int port) throws IOException {
    socket = new Socket();
    socket.connect(new InetSocketAddress("127.0.0.1", port), 5_000);
    socket.setSoTimeout(10_000);
    socket.setTcpNoDelay(true);
    in = new DataInputStream(socket.getInputStream());
    out = socket.getOutputStream();
  }

  public WireClient timeout(int millis) throws IOException {
    socket.setSoTimeout(millis);
    return this;
  }

  public WireClient send(byte[] bytes) throws IOException {
    out.write(bytes);
    out.flush();
    return this;
  }

  public static byte[] startupPacket(int version, Map<String, String> params) {
    ByteBuffer buf = ByteBuffer.allocate(8 + 1024);
    buf.putInt(0).putInt(version);
    params.forEach(
        (k, v) -> {
          buf.put(k.getBytes(StandardCharsets.UTF_8)).put((byte) 0);
          buf.put(v.getBytes(StandardCharsets.UTF_8)).put((byte) 0);
        });
    buf.put((byte) 0);
    buf.putInt(0, buf.position());
    byte[] packet = new byte[buf.position()];
    buf.flip().get(packet);
    return packet;
  }

  public static Map<String, String> params(String user, String database) {
    Map<String, String> params = new LinkedHashMap<>();
    params.put("user", user);
    params.put("database", database);
    return params;
  }

  public static byte[] message(char type, byte[] body) {
    return ByteBuffer.allocate(5 + body.length)
        .put((byte) type)
        .putInt(4 + body.length)
        .put(body)
        .array();
  }

  public static byte[] query(String sql) {
    byte[] text = (sql + "\0").getBytes(StandardCharsets.UTF_8);
    return message('Q', text);
  }

  /** Sends a 3.0 StartupMessage; with trust auth this logs in. */
  public WireClient startup(String user, String database) throws IOException {
    return send(startupPacket(3 << 16, params(user, database)));
  }

  public Message read() throws IOException {
    char type = (char) in.readUnsignedByte();
    int length = in.readInt();
    byte[] body = new byte[length - 4];
    in.readFully(body);
    return new Message(type, body);
  }

  public int readByte() throws IOException {
    return in.read();
  }

  /** Reads until ReadyForQuery; returns the first ErrorResponse seen, or null. */
  public Message readUntilReady() throws IOException {
    Message error = null;
    while (true) {
      Message m = read();
      if (m.type() == 'E' && error == null) {
        error = m;
      }
      if (m.type() == 'Z') {
        return error;
      }
    }
  }

  /** Reads until the server sends an ErrorResponse and returns it. */
  public Message readError() throws IOException {
    while (true) {
      Message m = read();
      if (m.type() == 'E') {
        return m;
      }
    }
  }

  /** True when the peer closed the connection (after draining what it sent). */
  public boolean closedByPeer() throws IOException {
    try {
      while (true) {
        if (in.read() < 0) {
          return true;
        }
      }
    } catch (EOFException e) {
      return true;
    } catch (SocketTimeoutException e) {
      return false;
    } catch (IOException e) {
      return true; // connection reset counts as closed
    }
  }

  @Override
  public void close() throws IOException {
    socket.close();
  }
}
