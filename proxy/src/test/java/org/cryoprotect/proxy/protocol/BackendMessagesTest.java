package org.cryoprotect.proxy.protocol;

import static org.assertj.core.api.Assertions.assertThat;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.ByteBufUtil;
import java.util.List;
import org.cryoprotect.proxy.protocol.backend.Authentication;
import org.cryoprotect.proxy.protocol.backend.Authentication.AuthenticationMD5Password;
import org.cryoprotect.proxy.protocol.backend.Authentication.AuthenticationOk;
import org.cryoprotect.proxy.protocol.backend.Authentication.AuthenticationSASL;
import org.cryoprotect.proxy.protocol.backend.Authentication.AuthenticationSASLContinue;
import org.cryoprotect.proxy.protocol.backend.BackendKeyData;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse.Severity;
import org.cryoprotect.proxy.protocol.backend.NegotiateProtocolVersion;
import org.cryoprotect.proxy.protocol.backend.ParameterStatus;
import org.cryoprotect.proxy.protocol.backend.ReadyForQuery;
import org.junit.jupiter.api.Test;

/** Byte-exact encodings checked against the layouts in the protocol's "Message Formats". */
class BackendMessagesTest {
  private static final ByteBufAllocator ALLOC = ByteBufAllocator.DEFAULT;

  private static String hex(ByteBuf buf) {
    try {
      return ByteBufUtil.hexDump(buf);
    } finally {
      buf.release();
    }
  }

  @Test
  void authenticationOk() {
    assertThat(hex(new AuthenticationOk().encode(ALLOC))).isEqualTo("520000000800000000");
  }

  @Test
  void authenticationMd5Password() {
    assertThat(hex(new AuthenticationMD5Password(new byte[] {1, 2, 3, 4}).encode(ALLOC)))
        .isEqualTo("520000000c0000000501020304");
  }

  @Test
  void authenticationSaslListsMechanismsThenEmptyString() {
    // 'R', len 23, code 10, "SCRAM-SHA-256\0", "\0"
    assertThat(hex(new AuthenticationSASL(List.of("SCRAM-SHA-256")).encode(ALLOC)))
        .isEqualTo("52000000170000000a534352414d2d5348412d3235360000");
  }

  @Test
  void authenticationDecodesWhatItEncodes() {
    ByteBuf frame = new AuthenticationSASLContinue(new byte[] {'r', '='}).encode(ALLOC);
    Authentication decoded = Authentication.decode(Frames.body(frame));
    frame.release();
    assertThat(decoded).isInstanceOf(AuthenticationSASLContinue.class);
    assertThat(((AuthenticationSASLContinue) decoded).data()).containsExactly('r', '=');
  }

  @Test
  void parameterStatusBackendKeyDataReadyForQuery() {
    assertThat(hex(new ParameterStatus("a", "b").encode(ALLOC))).isEqualTo("530000000861006200");
    assertThat(hex(new BackendKeyData(1, 2).encode(ALLOC))).isEqualTo("4b0000000c0000000100000002");
    assertThat(hex(new ReadyForQuery(ReadyForQuery.IDLE).encode(ALLOC))).isEqualTo("5a0000000549");
  }

  @Test
  void negotiateProtocolVersion() {
    assertThat(hex(new NegotiateProtocolVersion(0, List.of("_pq_.x")).encode(ALLOC)))
        .isEqualTo("760000001300000000000000015f70715f2e7800");
  }

  @Test
  void errorResponseCarriesSqlStateAndPrefix() {
    ErrorResponse error = ErrorResponse.of(Severity.FATAL, SqlState.PROTOCOL_VIOLATION, "bad");
    ByteBuf frame = error.encode(ALLOC);
    assertThat(Frames.type(frame)).isEqualTo((byte) 'E');
    assertThat(ErrorResponse.sqlState(frame)).isEqualTo("08P01");
    ErrorResponse decoded = ErrorResponse.decode('E', Frames.body(frame));
    frame.release();
    assertThat(decoded.message()).isEqualTo("cryoproxy: bad");
    assertThat(decoded.severity()).isEqualTo("FATAL");
    assertThat(decoded).isEqualTo(error);
  }
}
