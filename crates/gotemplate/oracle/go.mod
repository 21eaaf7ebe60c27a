module sip/crates/gotemplate/oracle

go 1.22
