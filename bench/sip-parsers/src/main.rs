fn main() {
    let _ = regmesh_sip::parse(b"");
    let _ = rsip::SipMessage::try_from(&b""[..]);
    let _ = rsipstack::sip::parser::parse_message(b"");
    let _ = ezk_sip_types::msg::PullParser::new(b"", 0);
}
